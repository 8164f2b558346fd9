package nft

import (
	"encoding/binary"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/weir-cni/weir/ruleset"
	"golang.org/x/sys/unix"
)

// This file translates the model into google/nftables values. It is pure:
// the same bytecode `nft -f` generates for the rendered text, so that
// `nft list` of a netlink-applied table prints that text back.

var weirTable = &nftables.Table{Family: nftables.TableFamilyINet, Name: ruleset.TableName}

func setDatatype(t ruleset.Type) nftables.SetDatatype {
	switch t {
	case ruleset.TypeIPv4:
		return nftables.TypeIPAddr
	case ruleset.TypeIPv6:
		return nftables.TypeIP6Addr
	case ruleset.TypeProto:
		return nftables.TypeInetProto
	case ruleset.TypeID:
		return nftables.TypeInteger
	case ruleset.TypeGroup:
		return nftables.TypeDevGroup
	default:
		return nftables.TypeInetService
	}
}

// kernelSet describes s as a google/nftables set (without elements).
func kernelSet(s ruleset.Set) *nftables.Set {
	ks := &nftables.Set{
		Table:        weirTable,
		Name:         s.Name,
		Interval:     s.Interval,
		IsMap:        s.Map,
		HasTimeout:   s.Timeout,
		Size:         s.Size,
		Comment:      s.Comment,
		KeyByteOrder: binaryutil.BigEndian,
	}
	if len(s.Key) == 1 && s.Key[0] == ruleset.TypeGroup {
		ks.KeyByteOrder = binaryutil.NativeEndian // meta loads it so
	}
	if len(s.Key) == 1 {
		ks.KeyType = setDatatype(s.Key[0])
	} else {
		types := make([]nftables.SetDatatype, 0, len(s.Key))
		for _, t := range s.Key {
			types = append(types, setDatatype(t))
		}
		ks.KeyType = nftables.MustConcatSetType(types...)
		ks.Concatenation = true
	}
	if s.Map {
		ks.DataType = nftables.TypeVerdict
	}
	return ks
}

// kernelElems encodes elements as the kernel wants them:
//   - a plain or concatenated key is each field padded to 4 bytes (a single
//     non-concatenated field is not padded);
//   - an interval set of one field (rbtree) takes a start element and an
//     end element one past the range, flagged IntervalEnd (no end element
//     when the range runs to the last address);
//   - a concatenated interval set (pipapo) takes one element with KeyEnd.
func kernelElems(s ruleset.Set, elems []ruleset.Elem) []nftables.SetElement {
	return new(elemBuf).kernelElems(s, elems)
}

// elemBuf holds the kernel elements of one set at a time: a full apply
// encodes each set's elements before it builds the next set's, and reuses
// the arrays of the sets before (see NetlinkApplier.addSet).
type elemBuf struct {
	els      []nftables.SetElement
	keys     []byte
	verdicts []expr.Verdict
}

// kernelElems is kernelElems, in b's arrays: the elements are valid until
// the next call.
func (b *elemBuf) kernelElems(s ruleset.Set, elems []ruleset.Elem) []nftables.SetElement {
	out := grown(b.els, len(elems))
	concat := len(s.Key) > 1
	// A rule's id is loaded by numgen in host byte order; nft converts it
	// to big-endian (byteorder) only for interval sets, which order keys.
	// A link group is loaded by meta in host byte order too.
	hostID := (s.Key[0] == ruleset.TypeID || s.Key[0] == ruleset.TypeGroup) && !s.Interval
	size := 0
	for _, t := range s.Key {
		size += (t.Size() + 3) &^ 3 // the padded size bounds the unpadded one
	}
	// One buffer for every key, one for every verdict: a full sync
	// encodes tens of thousands.
	arena := grown(b.keys, 3*size*len(elems))
	var verdicts []expr.Verdict
	if s.Map {
		verdicts = grown(b.verdicts, len(elems))[:len(elems)]
		b.verdicts = verdicts
	}
	for i, e := range elems {
		start := len(arena)
		for j, k := range e.Key {
			arena = appendField(arena, k.From, concat, hostID && j == 0)
		}
		from := arena[start:len(arena):len(arena)]
		start = len(arena)
		for j, k := range e.Key {
			arena = appendField(arena, k.To, concat, hostID && j == 0)
		}
		to := arena[start:len(arena):len(arena)]
		el := nftables.SetElement{Key: from}
		if s.Map {
			verdicts[i] = kernelVerdict(e.MapVerdict())
			el.VerdictData = &verdicts[i]
		}
		switch {
		case s.Interval && concat:
			el.KeyEnd = to
			out = append(out, el)
		case s.Interval:
			out = append(out, el)
			start = len(arena)
			arena = append(arena, to...)
			if end, ok := increment(arena[start:len(arena):len(arena)]); ok {
				out = append(out, nftables.SetElement{Key: end, IntervalEnd: true})
			}
		default:
			out = append(out, el)
		}
	}
	b.els, b.keys = out, arena
	return out
}

// grown is s emptied, with room for n values: s's array when it has.
func grown[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, 0, n)
	}
	return s[:0]
}

// appendField appends one key field, padded to 4 bytes when pad, and
// in host byte order when host (a 4-byte id).
func appendField(b []byte, v string, pad, host bool) []byte {
	if host {
		return binary.NativeEndian.AppendUint32(b, uint32(v[0])<<24|uint32(v[1])<<16|uint32(v[2])<<8|uint32(v[3]))
	}
	b = append(b, v...)
	if pad {
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

// increment adds one to b, a big-endian number, in place; false on
// overflow.
func increment(out []byte) ([]byte, bool) {
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return nil, false
}

// kernelCounter is the named counter name.
func kernelCounter(name string) *nftables.CounterObj {
	return &nftables.CounterObj{Table: weirTable, Name: name}
}

func kernelVerdict(v ruleset.Verdict) expr.Verdict {
	switch v.Kind {
	case ruleset.VerdictJump:
		return expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain}
	case ruleset.VerdictDrop:
		return expr.Verdict{Kind: expr.VerdictDrop}
	case ruleset.VerdictReturn:
		return expr.Verdict{Kind: expr.VerdictReturn}
	default:
		return expr.Verdict{Kind: expr.VerdictAccept}
	}
}

// kernelChain describes c as a google/nftables chain.
func kernelChain(c ruleset.Chain) *nftables.Chain {
	kc := &nftables.Chain{Table: weirTable, Name: c.Name}
	if c.Base != nil {
		hook := nftables.ChainHookForward
		switch c.Base.Hook {
		case ruleset.HookPostrouting:
			hook = nftables.ChainHookPostrouting
		case ruleset.HookPrerouting:
			hook = nftables.ChainHookPrerouting
		case ruleset.HookInput:
			hook = nftables.ChainHookInput
		}
		policy := nftables.ChainPolicyAccept
		kc.Hooknum = hook
		kc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(c.Base.Priority))
		kc.Type = nftables.ChainType(c.Base.Type)
		kc.Policy = &policy
	}
	return kc
}

// exprBuf holds the expressions of the rule being encoded, of the kinds a
// policy rule is made of: rule builds each rule from it anew, reusing what
// the rule before held, so that the applier, which encodes each rule
// before it builds the next, allocates a full sync's hundred thousand
// expressions once. The rule it returns is valid until the next call.
type exprBuf struct {
	kr        nftables.Rule
	exprs     []expr.Any
	meta      slab[expr.Meta]
	cmp       slab[expr.Cmp]
	payload   slab[expr.Payload]
	numgen    slab[expr.Numgen]
	byteorder slab[expr.Byteorder]
	lookup    slab[expr.Lookup]
	objref    slab[expr.Objref]
	verdict   slab[expr.Verdict]
	data      []byte // the expressions' data bytes
	userdata  []byte
}

// slab hands out values of T, reused once reset.
type slab[T any] struct {
	items []T
	n     int
}

// put returns a pointer to a copy of v, valid until reset.
func (s *slab[T]) put(v T) *T {
	if s.n < len(s.items) {
		s.items[s.n] = v
	} else {
		s.items = append(s.items, v) // the pointers given before keep the old array
	}
	s.n++
	return &s.items[s.n-1]
}

func (s *slab[T]) reset() { s.n = 0 }

// bytes returns a copy of v, valid until the next reset.
func (b *exprBuf) bytes(v ...byte) []byte {
	start := len(b.data)
	b.data = append(b.data, v...) // the slices given before keep the old array
	return b.data[start:len(b.data):len(b.data)]
}

func (b *exprBuf) reset() {
	b.exprs = b.exprs[:0]
	b.meta.reset()
	b.cmp.reset()
	b.payload.reset()
	b.numgen.reset()
	b.byteorder.reset()
	b.lookup.reset()
	b.objref.reset()
	b.verdict.reset()
	b.data = b.data[:0]
}

// rule compiles one rule to expressions. interval tells whether a set is
// an interval set (nft adds a byteorder step for meta l4proto there).
func (b *exprBuf) rule(chain *nftables.Chain, r ruleset.Rule, interval func(string) bool) *nftables.Rule {
	b.reset()
	var (
		exprs = b.exprs
		fam   byte // the nfproto already checked in this rule
	)
	for _, m := range r.Matches {
		if m.Kind == ruleset.MatchCtState {
			exprs = append(exprs,
				&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(m.CtStates), Xor: []byte{0, 0, 0, 0}},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			)
			continue
		}
		switch m.Kind {
		case ruleset.MatchPort:
			exprs = b.portExprs(exprs, m)
			continue
		case ruleset.MatchIifname, ruleset.MatchOifname:
			op := expr.CmpOpEq
			if m.Negate {
				op = expr.CmpOpNeq
			}
			key := expr.MetaKeyIIFNAME
			if m.Kind == ruleset.MatchOifname {
				key = expr.MetaKeyOIFNAME
			}
			// A name ending in "*" compares the prefix's bytes only.
			exprs = append(exprs,
				&expr.Meta{Key: key, Register: 1},
				&expr.Cmp{Op: op, Register: 1, Data: []byte(m.IfPrefix)})
			continue
		case ruleset.MatchRPFail:
			exprs = append(exprs,
				&expr.Fib{Register: 1, FlagSADDR: true, FlagIIF: true, ResultOIF: true, FlagPRESENT: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0, 0, 0}})
			continue
		case ruleset.MatchMark:
			op := expr.CmpOpEq
			if m.Negate {
				op = expr.CmpOpNeq
			}
			bits := binaryutil.NativeEndian.PutUint32(m.Mark)
			exprs = append(exprs,
				&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: bits, Xor: []byte{0, 0, 0, 0}},
				&expr.Cmp{Op: op, Register: 1, Data: bits})
			continue
		}
		if m.ID != 0 {
			exprs = b.idExprs(exprs, m, &fam, interval(m.Set))
		} else {
			exprs = b.loadFields(exprs, m.Fields, &fam, interval(m.Set), 0)
		}
		exprs = append(exprs, b.lookup.put(expr.Lookup{SourceRegister: 1, SetName: m.Set, Invert: m.Negate}))
	}
	if r.Counter != "" {
		exprs = append(exprs, b.objref.put(expr.Objref{Type: unix.NFT_OBJECT_COUNTER, Name: r.Counter}))
	}
	if l := r.Log; l != nil {
		if l.Rate > 0 {
			exprs = append(exprs, &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(l.Rate), Unit: expr.LimitTimeSecond, Burst: 5})
		}
		exprs = append(exprs, &expr.Log{Key: 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP, Group: l.Group, Data: []byte(l.Prefix)})
	}
	if m := r.Mark; m != nil {
		exprs = append(exprs,
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(^m.Mask), Xor: binaryutil.NativeEndian.PutUint32(m.Value)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
	}
	if tp := r.TProxy; tp != nil {
		exprs = append(exprs, tproxyExprs(*tp)...)
	}
	switch v := r.Verdict; {
	case (r.Log != nil || r.Mark != nil) && v.Kind == ruleset.VerdictNone:
	case v.Kind == ruleset.VerdictVMap:
		exprs = b.loadFields(exprs, v.Fields, &fam, false, 0)
		exprs = append(exprs, b.lookup.put(expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: v.Map}))
	case v.Kind == ruleset.VerdictMasquerade:
		exprs = append(exprs, &expr.Masq{})
	default:
		exprs = append(exprs, b.verdict.put(kernelVerdict(v)))
	}
	b.exprs = exprs
	b.kr = nftables.Rule{Table: weirTable, Chain: chain, Exprs: exprs}
	if c := r.Owner.String(); c != "" {
		b.userdata = userdata.AppendString(b.userdata[:0], userdata.TypeComment, c)
		b.kr.UserData = b.userdata
	}
	return &b.kr
}

// idExprs loads `numgen random mod 1 offset ID . fields` as nft does: the
// nfproto check of the fields first, the id (always ID) into reg 1, turned
// big-endian for an interval set, then the fields from the next 32-bit
// register.
func (b *exprBuf) idExprs(out []expr.Any, m ruleset.Match, fam *byte, interval bool) []expr.Any {
	for _, f := range m.Fields {
		if fieldFamily(f) != unix.NFPROTO_UNSPEC {
			out = b.nfprotoCheck(out, f, fam) // loadFields then finds it done
			break
		}
	}
	out = append(out, b.numgen.put(expr.Numgen{Register: 1, Modulus: 1, Type: unix.NFT_NG_RANDOM, Offset: m.ID}))
	if interval {
		out = append(out, b.byteorder.put(expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4}))
	}
	return b.loadFields(out, m.Fields, fam, interval, 1)
}

// fieldFamily is the nfproto an address field implies, NFPROTO_UNSPEC for
// the other fields.
func fieldFamily(f ruleset.Field) byte {
	switch f {
	case ruleset.FieldIPSaddr, ruleset.FieldIPDaddr:
		return unix.NFPROTO_IPV4
	case ruleset.FieldIP6Saddr, ruleset.FieldIP6Daddr:
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_UNSPEC
}

// nfprotoCheck appends the `meta nfproto` check that field f implies in an
// inet table, unless f implies none or *fam (the family the rule already
// checked) is that one; it records the family in *fam.
func (b *exprBuf) nfprotoCheck(out []expr.Any, f ruleset.Field, fam *byte) []expr.Any {
	want := fieldFamily(f)
	if want == unix.NFPROTO_UNSPEC || *fam == want {
		return out
	}
	*fam = want
	return append(out,
		b.meta.put(expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}),
		b.cmp.put(expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b.bytes(want)}))
}

// loadFields loads a concatenation into registers starting at reg 1 (the
// 32-bit registers 8, 9, ... after the first), or at 32-bit register 8 +
// word when word > 0, adding the nfproto check that `ip`/`ip6` fields
// imply in an inet table.
func (b *exprBuf) loadFields(out []expr.Any, fs []ruleset.Field, fam *byte, interval bool, word uint32) []expr.Any {
	concat := len(fs) > 1 || word > 0
	for _, f := range fs {
		reg := uint32(1)
		if word > 0 {
			reg = 8 + word
		}
		switch f {
		case ruleset.FieldIPSaddr, ruleset.FieldIPDaddr, ruleset.FieldIP6Saddr, ruleset.FieldIP6Daddr:
			off, n := uint32(12), uint32(4)
			switch f {
			case ruleset.FieldIPDaddr:
				off = 16
			case ruleset.FieldIP6Saddr:
				off, n = 8, 16
			case ruleset.FieldIP6Daddr:
				off, n = 24, 16
			}
			out = b.nfprotoCheck(out, f, fam)
			out = append(out, b.payload.put(expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}))
			word += n / 4
		case ruleset.FieldL4Proto:
			out = append(out, b.meta.put(expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}))
			if interval && concat {
				out = append(out, b.byteorder.put(expr.Byteorder{SourceRegister: reg, DestRegister: reg, Op: expr.ByteorderHton, Len: 1, Size: 2}))
			}
			word++
		case ruleset.FieldTHDport:
			out = append(out, b.payload.put(expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}))
			word++
		case ruleset.FieldIifgroup, ruleset.FieldOifgroup:
			key := expr.MetaKeyIIFGROUP
			if f == ruleset.FieldOifgroup {
				key = expr.MetaKeyOIFGROUP
			}
			out = append(out, b.meta.put(expr.Meta{Key: key, Register: reg}))
			word++
		}
	}
	return out
}

// portExprs is what nft generates for `tcp dport 80` / `tcp dport 1-2` /
// `meta l4proto udp` in an inet table.
func (b *exprBuf) portExprs(out []expr.Any, m ruleset.Match) []expr.Any {
	out = append(out,
		b.meta.put(expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}),
		b.cmp.put(expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b.bytes(m.Proto)}))
	if m.AllPorts {
		return out
	}
	out = append(out, b.payload.put(expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}))
	from := b.bytes(byte(m.PortFrom>>8), byte(m.PortFrom))
	if m.PortFrom == m.PortTo {
		return append(out, b.cmp.put(expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: from}))
	}
	return append(out,
		b.cmp.put(expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: from}),
		b.cmp.put(expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: b.bytes(byte(m.PortTo>>8), byte(m.PortTo))}))
}

// tproxyExprs is what nft generates for `tproxy ip to :PORT` (ip6): the
// port, big-endian, into reg 1, then the statement reading it. Its nfproto
// and l4proto dependencies are the rule's matches.
func tproxyExprs(tp ruleset.TProxy) []expr.Any {
	family := byte(unix.NFPROTO_IPV4)
	if tp.IPv6 {
		family = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(tp.Port)},
		&expr.TProxy{Family: family, TableFamily: byte(nftables.TableFamilyINet), RegPort: 1},
	}
}
