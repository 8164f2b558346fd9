package ruleset

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Packet is what Trace needs of a forwarded packet.
type Packet struct {
	Src, Dst netip.Addr
	Proto    uint8 // IP protocol number: 6 TCP, 17 UDP, 132 SCTP
	DPort    uint16
	// CtState is the conntrack state bit (CtNew when zero).
	CtState uint32
	// InIface and OutIface name the interfaces the packet comes in on and
	// leaves by, InGroup and OutGroup are their link groups (0: the
	// default group). Empty names match no interface name test: a trace
	// without them is of a packet between two hosts weir does not wire.
	InIface, OutIface string
	InGroup, OutGroup uint32
}

// IP protocol numbers of the protocols NetworkPolicy knows, for
// Packet.Proto and Match.Proto.
const (
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// maxJumpDepth bounds chain recursion, as the kernel does.
const maxJumpDepth = 16

// Trace walks the forward-hook base chains of r in priority order, as the
// kernel would for p, and returns VerdictAccept or VerdictDrop with the rules
// that decided, one line per step ("chain: rule"). An accept ends one base
// chain only; a drop is final; a base chain that falls through accepts
// (policy accept).
func Trace(r Ruleset, p Packet) (VerdictKind, []string) {
	if p.CtState == 0 {
		p.CtState = CtNew
	}
	p.Src, p.Dst = p.Src.Unmap(), p.Dst.Unmap()
	var base []Chain
	for _, c := range r.Chains {
		if c.Base != nil && c.Base.Hook == HookForward {
			base = append(base, c)
		}
	}
	sort.SliceStable(base, func(i, j int) bool { return base[i].Base.Priority < base[j].Base.Priority })
	t := tracer{r: r, p: p}
	for _, c := range base {
		v := t.chain(c, 0)
		if v == VerdictDrop {
			return VerdictDrop, t.reasons
		}
		if v == VerdictNone {
			t.reasons = append(t.reasons, c.Name+": policy accept")
		}
	}
	return VerdictAccept, t.reasons
}

type tracer struct {
	r       Ruleset
	p       Packet
	reasons []string
}

// chain returns VerdictAccept, VerdictDrop, or VerdictNone (fell through).
func (t *tracer) chain(c Chain, depth int) VerdictKind {
	if depth > maxJumpDepth {
		t.reasons = append(t.reasons, c.Name+": jump depth exceeded, drop")
		return VerdictDrop
	}
	for _, rule := range c.Rules {
		if rule.Log != nil || !t.matches(rule.Matches) {
			continue // a log rule decides nothing
		}
		v := rule.Verdict
		if v.Kind == VerdictVMap {
			e, ok := t.lookup(v.Map, 0, v.Fields)
			if !ok {
				continue
			}
			t.reasons = append(t.reasons, fmt.Sprintf("%s: %s -> %s", c.Name, rule, e.Verdict))
			v = e.Verdict
		} else {
			t.reasons = append(t.reasons, c.Name+": "+rule.String())
		}
		switch v.Kind {
		case VerdictAccept, VerdictDrop:
			return v.Kind
		case VerdictJump:
			target, ok := t.r.Chain(v.Chain)
			if !ok {
				t.reasons = append(t.reasons, "missing chain "+v.Chain+", drop")
				return VerdictDrop
			}
			if res := t.chain(target, depth+1); res != VerdictNone {
				return res
			}
		}
	}
	return VerdictNone
}

func (t *tracer) matches(ms []Match) bool {
	for _, m := range ms {
		var ok bool
		switch m.Kind {
		case MatchCtState:
			ok = t.p.CtState&m.CtStates != 0
		case MatchPort:
			ok = t.p.Proto == m.Proto && (m.AllPorts || (t.p.DPort >= m.PortFrom && t.p.DPort <= m.PortTo))
		case MatchLookup:
			_, ok = t.lookup(m.Set, m.ID, m.Fields)
			if _, known := t.key(m.Fields); !known {
				return false // wrong family: the nfproto dependency fails
			}
			ok = ok != m.Negate
		case MatchIifname:
			ok = t.p.InIface != "" && strings.HasPrefix(t.p.InIface, m.IfPrefix) != m.Negate
		case MatchOifname:
			ok = t.p.OutIface != "" && strings.HasPrefix(t.p.OutIface, m.IfPrefix) != m.Negate
		case MatchRPFail:
			// A Packet has no route: the test (prerouting only) never
			// matches in a trace of the forward hook.
			ok = false
		}
		if !ok {
			return false
		}
	}
	return true
}

// key builds the lookup key of the packet; false when a field does not apply
// to the packet's family.
func (t *tracer) key(fs []Field) ([]string, bool) {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		var a netip.Addr
		switch f {
		case FieldIPSaddr, FieldIP6Saddr:
			a = t.p.Src
		case FieldIPDaddr, FieldIP6Daddr:
			a = t.p.Dst
		case FieldL4Proto:
			out = append(out, string([]byte{t.p.Proto}))
			continue
		case FieldTHDport:
			out = append(out, PortBytes(t.p.DPort))
			continue
		case FieldIifgroup:
			out = append(out, IDBytes(t.p.InGroup))
			continue
		case FieldOifgroup:
			out = append(out, IDBytes(t.p.OutGroup))
			continue
		}
		if a.Is4() != (f == FieldIPSaddr || f == FieldIPDaddr) {
			return nil, false
		}
		out = append(out, string(a.AsSlice()))
	}
	return out, true
}

// lookup finds the element of set matching the packet's fields, prefixed
// by id when id is not 0.
func (t *tracer) lookup(set string, id uint32, fs []Field) (Elem, bool) {
	key, ok := t.key(fs)
	if !ok {
		return Elem{}, false
	}
	if id != 0 {
		key = append([]string{IDBytes(id)}, key...)
	}
	s, ok := t.r.Set(set)
	if !ok || len(s.Key) != len(key) {
		return Elem{}, false
	}
	for _, e := range s.Elems {
		if elemContains(e, key) {
			return e, true
		}
	}
	return Elem{}, false
}

func elemContains(e Elem, key []string) bool {
	for i, k := range key {
		if k < e.Key[i].From || k > e.Key[i].To {
			return false
		}
	}
	return true
}
