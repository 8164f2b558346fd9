package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The applier encodes its NEWRULE and NEWSETELEM/DELSETELEM messages
// itself, byte for byte as google/nftables' AddRule and SetAddElements /
// SetDeleteElements do (TestRuleMessageMatchesLibrary,
// TestElemsMessageMatchesLibrary): those marshal every attribute into a
// slice of its own and copy it into its parent's, so that a rule of ten
// expressions costs some sixty allocations, an element four; a dense
// table's ten thousand rules and twenty thousand elements made them the
// largest producers of garbage of a full sync. ruleMessage and
// elemsMessage write each message into one buffer.

// attrWriter appends netlink attributes to a buffer. The applier's keeps
// appending the messages of a batch to one buffer, a chunk at a time
// (reserve), each message a slice of it.
type attrWriter struct{ b []byte }

// arenaChunk is the largest chunk an attrWriter encodes messages into;
// its chunks start at firstChunk and double: a change of a few elements
// (the batch of a pod label change is a few KiB) allocates and clears no
// more than it needs, a full sync ends up in chunks of arenaChunk.
const (
	arenaChunk = 256 << 10
	firstChunk = 4 << 10
)

// reserve makes room for n more bytes, in a new chunk when the current one
// has less: the messages encoded so far keep the old one.
func (w *attrWriter) reserve(n int) {
	if cap(w.b)-len(w.b) < n {
		size := min(max(2*cap(w.b), firstChunk), arenaChunk)
		w.b = make([]byte, 0, max(n, size))
	}
}

// message is the bytes appended since start, as a message's data.
func (w *attrWriter) message(start int) []byte {
	return w.b[start:len(w.b):len(w.b)]
}

// put appends attribute typ holding data, padded to 4 bytes.
func (w *attrWriter) put(typ uint16, data []byte) {
	w.b = binary.NativeEndian.AppendUint16(w.b, uint16(unix.NLA_HDRLEN+len(data)))
	w.b = binary.NativeEndian.AppendUint16(w.b, typ)
	w.b = append(w.b, data...)
	w.pad()
}

// str appends attribute typ holding s and a NUL.
func (w *attrWriter) str(typ uint16, s string) {
	w.b = binary.NativeEndian.AppendUint16(w.b, uint16(unix.NLA_HDRLEN+len(s)+1))
	w.b = binary.NativeEndian.AppendUint16(w.b, typ)
	w.b = append(w.b, s...)
	w.b = append(w.b, 0)
	w.pad()
}

// u32 appends attribute typ holding v, big-endian.
func (w *attrWriter) u32(typ uint16, v uint32) {
	w.b = binary.NativeEndian.AppendUint16(w.b, unix.NLA_HDRLEN+4)
	w.b = binary.NativeEndian.AppendUint16(w.b, typ)
	w.b = binary.BigEndian.AppendUint32(w.b, v)
}

// u64 appends attribute typ holding v, big-endian.
func (w *attrWriter) u64(typ uint16, v uint64) {
	w.b = binary.NativeEndian.AppendUint16(w.b, unix.NLA_HDRLEN+8)
	w.b = binary.NativeEndian.AppendUint16(w.b, typ)
	w.b = binary.BigEndian.AppendUint64(w.b, v)
}

// begin starts nested attribute typ; end(begin's result) closes it.
func (w *attrWriter) begin(typ uint16) int {
	at := len(w.b)
	w.b = append(w.b, 0, 0, 0, 0)
	binary.NativeEndian.PutUint16(w.b[at+2:], unix.NLA_F_NESTED|typ)
	return at
}

func (w *attrWriter) end(at int) {
	binary.NativeEndian.PutUint16(w.b[at:], uint16(len(w.b)-at))
}

func (w *attrWriter) pad() {
	for len(w.b)%unix.NLA_ALIGNTO != 0 {
		w.b = append(w.b, 0)
	}
}

// value appends nested attribute typ holding data as NFTA_DATA_VALUE.
func (w *attrWriter) value(typ uint16, data []byte) {
	at := w.begin(typ)
	w.put(unix.NFTA_DATA_VALUE, data)
	w.end(at)
}

// counterMessage is the NEWOBJ message google/nftables' AddObj queues for
// kernelCounter(name): a counter at zero.
func counterMessage(w *attrWriter, name string) netlink.Message {
	w.reserve(96 + len(name))
	start := w.header(weirTable.Family)
	w.str(unix.NFTA_OBJ_TABLE, weirTable.Name)
	w.str(unix.NFTA_OBJ_NAME, name)
	w.u32(unix.NFTA_OBJ_TYPE, unix.NFT_OBJECT_COUNTER)
	data := w.begin(unix.NFTA_OBJ_DATA)
	w.u64(unix.NFTA_COUNTER_BYTES, 0)
	w.u64(unix.NFTA_COUNTER_PACKETS, 0)
	w.end(data)
	return w.request(start, unix.NFT_MSG_NEWOBJ, 0)
}

// chainMessage is the NEWCHAIN message google/nftables' AddChain queues
// for kernelChain of a regular chain (one without a hook) named name.
func chainMessage(w *attrWriter, name string) netlink.Message {
	w.reserve(32 + len(name))
	start := w.header(weirTable.Family)
	w.str(unix.NFTA_CHAIN_TABLE, weirTable.Name)
	w.str(unix.NFTA_CHAIN_NAME, name)
	return w.request(start, unix.NFT_MSG_NEWCHAIN, 0)
}

// header appends the nfgenmsg of a message of family fam and returns
// where the message starts.
func (w *attrWriter) header(fam nftables.TableFamily) int {
	start := len(w.b)
	w.b = append(w.b, byte(fam), unix.NFNETLINK_V0, 0, 0)
	return start
}

// request is the message of type typ whose data was appended since start,
// with the flags google/nftables gives a request that creates an object
// and flags.
func (w *attrWriter) request(start int, typ uint16, flags netlink.HeaderFlags) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create | flags,
		},
		Data: w.message(start),
	}
}

// ruleMessage is the NEWRULE message google/nftables' AddRule queues for kr
// (a rule without handle, position or compat expressions, as exprBuf.rule
// builds them).
func ruleMessage(w *attrWriter, kr *nftables.Rule) (netlink.Message, error) {
	w.reserve(2048)
	start := w.header(kr.Table.Family)
	w.str(unix.NFTA_RULE_TABLE, kr.Table.Name)
	w.str(unix.NFTA_RULE_CHAIN, kr.Chain.Name)
	list := w.begin(unix.NFTA_RULE_EXPRESSIONS)
	for _, e := range kr.Exprs {
		elem := w.begin(unix.NFTA_LIST_ELEM)
		if err := w.expr(byte(kr.Table.Family), e); err != nil {
			return netlink.Message{}, err
		}
		w.end(elem)
	}
	w.end(list)
	if kr.UserData != nil {
		w.put(unix.NFTA_RULE_USERDATA, kr.UserData)
	}
	return w.request(start, unix.NFT_MSG_NEWRULE, unix.NLM_F_ECHO|unix.NLM_F_APPEND), nil
}

// expr appends expression e (its name and data). The expressions a policy
// rule is made of are written here; the others as google/nftables marshals
// them.
func (w *attrWriter) expr(fam byte, e expr.Any) error {
	var data int
	named := func(name string) {
		w.str(unix.NFTA_EXPR_NAME, name)
		data = w.begin(unix.NFTA_EXPR_DATA)
	}
	switch e := e.(type) {
	case *expr.Meta:
		named("meta")
		w.u32(unix.NFTA_META_KEY, uint32(e.Key))
		if e.SourceRegister {
			w.u32(unix.NFTA_META_SREG, e.Register)
		} else {
			w.u32(unix.NFTA_META_DREG, e.Register)
		}
	case *expr.Cmp:
		named("cmp")
		w.u32(unix.NFTA_CMP_SREG, e.Register)
		w.u32(unix.NFTA_CMP_OP, uint32(e.Op))
		w.value(unix.NFTA_CMP_DATA, e.Data)
	case *expr.Payload:
		if e.OperationType == expr.PayloadWrite || e.CsumType > 0 {
			return w.marshalled(fam, e)
		}
		named("payload")
		w.u32(unix.NFTA_PAYLOAD_DREG, e.DestRegister)
		w.u32(unix.NFTA_PAYLOAD_BASE, uint32(e.Base))
		w.u32(unix.NFTA_PAYLOAD_OFFSET, e.Offset)
		w.u32(unix.NFTA_PAYLOAD_LEN, e.Len)
	case *expr.Numgen:
		if e.Type != unix.NFT_NG_RANDOM && e.Type != unix.NFT_NG_INCREMENTAL {
			return w.marshalled(fam, e)
		}
		named("numgen")
		w.u32(unix.NFTA_NG_DREG, e.Register)
		w.u32(unix.NFTA_NG_MODULUS, e.Modulus)
		w.u32(unix.NFTA_NG_TYPE, e.Type)
		w.u32(unix.NFTA_NG_OFFSET, e.Offset)
	case *expr.Byteorder:
		named("byteorder")
		w.u32(unix.NFTA_BYTEORDER_SREG, e.SourceRegister)
		w.u32(unix.NFTA_BYTEORDER_DREG, e.DestRegister)
		w.u32(unix.NFTA_BYTEORDER_OP, uint32(e.Op))
		w.u32(unix.NFTA_BYTEORDER_LEN, e.Len)
		w.u32(unix.NFTA_BYTEORDER_SIZE, e.Size)
	case *expr.Lookup:
		named("lookup")
		if e.SourceRegister != 0 {
			w.u32(unix.NFTA_LOOKUP_SREG, e.SourceRegister)
		}
		if e.IsDestRegSet {
			w.u32(unix.NFTA_LOOKUP_DREG, e.DestRegister)
		}
		if e.Invert {
			w.u32(unix.NFTA_LOOKUP_FLAGS, unix.NFT_LOOKUP_F_INV)
		}
		w.str(unix.NFTA_LOOKUP_SET, e.SetName)
		w.u32(unix.NFTA_LOOKUP_SET_ID, e.SetID)
	case *expr.Objref:
		named("objref")
		w.u32(unix.NFTA_OBJREF_IMM_TYPE, uint32(e.Type))
		w.put(unix.NFTA_OBJREF_IMM_NAME, []byte(e.Name)) // no NUL, as google/nftables writes it
	case *expr.Verdict:
		named("immediate")
		w.u32(unix.NFTA_IMMEDIATE_DREG, unix.NFT_REG_VERDICT)
		w.verdict(unix.NFTA_IMMEDIATE_DATA, e)
	case *expr.Bitwise:
		named("bitwise")
		w.u32(unix.NFTA_BITWISE_SREG, e.SourceRegister)
		w.u32(unix.NFTA_BITWISE_DREG, e.DestRegister)
		w.u32(unix.NFTA_BITWISE_LEN, e.Len)
		w.value(unix.NFTA_BITWISE_MASK, e.Mask)
		w.value(unix.NFTA_BITWISE_XOR, e.Xor)
	default:
		return w.marshalled(fam, e)
	}
	w.end(data)
	return nil
}

// verdict appends nested attribute typ holding verdict v. (google/nftables
// writes an element's verdict under other names of the same numbers.)
func (w *attrWriter) verdict(typ uint16, v *expr.Verdict) {
	data := w.begin(typ)
	at := w.begin(unix.NFTA_DATA_VERDICT)
	w.u32(unix.NFTA_VERDICT_CODE, uint32(v.Kind))
	if v.Chain != "" {
		w.str(unix.NFTA_VERDICT_CHAIN, v.Chain)
	}
	w.end(at)
	w.end(data)
}

// marshalled appends e as google/nftables marshals it.
func (w *attrWriter) marshalled(fam byte, e expr.Any) error {
	b, err := expr.Marshal(fam, e)
	if err != nil {
		return fmt.Errorf("encode expression %T: %w", e, err)
	}
	w.b = append(w.b, b...)
	return nil
}

// elemsMessage is the message google/nftables' SetAddElements (typ
// NFT_MSG_NEWSETELEM) or SetDeleteElements (NFT_MSG_DELSETELEM) queues for
// els, elements as kernelElems and the learner build them (keys, key ends,
// interval ends, verdicts, timeouts).
func elemsMessage(w *attrWriter, ks *nftables.Set, els []nftables.SetElement, typ uint16) (netlink.Message, error) {
	size := 64 + len(ks.Name) + len(ks.Table.Name)
	for _, e := range els {
		size += elemSize(e) + 12 // and a timeout
	}
	w.reserve(size)
	start := w.header(ks.Table.Family)
	w.str(unix.NFTA_SET_ELEM_LIST_SET, ks.Name)
	w.u32(unix.NFTA_SET_ELEM_LIST_SET_ID, ks.ID)
	w.str(unix.NFTA_SET_ELEM_LIST_TABLE, ks.Table.Name)
	list := w.begin(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
	for i, v := range els {
		if len(v.Val) > 0 || v.Comment != "" {
			return netlink.Message{}, fmt.Errorf("set %s: element with data or comment", ks.Name)
		}
		item := w.begin(uint16(i + 1))
		if v.IntervalEnd {
			w.u32(unix.NLA_F_NESTED|unix.NFTA_SET_ELEM_FLAGS, unix.NFT_SET_ELEM_INTERVAL_END) // flagged nested, as google/nftables writes it
		}
		w.value(unix.NFTA_SET_ELEM_KEY, v.Key)
		if len(v.KeyEnd) > 0 {
			w.value(nftables.NFTA_SET_ELEM_KEY_END, v.KeyEnd)
		}
		if ks.HasTimeout && v.Timeout != 0 {
			w.u64(unix.NFTA_SET_ELEM_TIMEOUT, uint64(v.Timeout.Milliseconds()))
		}
		if vd := v.VerdictData; vd != nil {
			w.verdict(unix.NFTA_SET_ELEM_DATA, vd)
		}
		w.end(item)
	}
	w.end(list)
	return w.request(start, typ, 0), nil
}
