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
	// Mark is the packet mark it arrives with.
	Mark uint32
	// ToHost is a packet to one of the node's own addresses: it meets the
	// input hook's base chains instead of the forward hook's.
	ToHost bool
	// ProxyDown says no socket listens on the port of the TProxy rules:
	// such a rule stops after its mark, and the packet goes on with the
	// next rule (see Rule.TProxy).
	ProxyDown bool
	// Learned, when set, holds the elements of the Dynamic sets, which
	// the data plane fills, not the Ruleset: it says whether set holds
	// key, the packet's addresses in the order of the lookup's fields
	// (for the learned-address sets of domainNames rules, the pod's
	// address then the learned one; see DNSRule). Nil: Dynamic sets are
	// empty. A Dynamic set keyed by anything but addresses holds nothing.
	Learned func(set string, key []netip.Addr) bool
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

// StepKind says what a Step of a trace is.
type StepKind int

// Step kinds.
const (
	// StepRule is a rule that matched the packet.
	StepRule StepKind = iota
	// StepPolicy is a base chain the packet fell through: its policy
	// accepts.
	StepPolicy
	// StepDepthExceeded is a jump nested deeper than the kernel allows:
	// drop.
	StepDepthExceeded
	// StepMissingChain is a jump to a chain the ruleset lacks: drop.
	StepMissingChain
	// StepTProxy is the delivery of the packet to the local socket a
	// TProxy rule chose, once the input hook accepted it: the trace's
	// last step.
	StepTProxy
)

// Step is one step of a trace: a rule that matched, a base chain's policy,
// or an error that dropped the packet.
type Step struct {
	Kind StepKind
	// Chain is the chain of the step (StepMissingChain: the chain missing).
	Chain string
	// Index is the position of the rule in Chain (StepRule), else -1.
	Index int
	// Rule is the rule that matched (StepRule); Owner is its owner.
	Rule  Rule
	Owner Owner
	// Verdict is what the step did with the packet: the rule's verdict,
	// for a verdict map the element's; accept for a base chain's policy,
	// drop for an error.
	Verdict Verdict
}

// String is the step as a human reads it: "chain: rule" as nft prints
// the rule, followed by "-> verdict" for a verdict map.
func (s Step) String() string {
	switch s.Kind {
	case StepPolicy:
		return s.Chain + ": policy accept"
	case StepDepthExceeded:
		return s.Chain + ": jump depth exceeded, drop"
	case StepMissingChain:
		return "missing chain " + s.Chain + ", drop"
	case StepTProxy:
		return fmt.Sprintf("%s: delivered to the local socket on port %d (tproxy)", s.Chain, s.Rule.TProxy.Port)
	}
	if s.Rule.Verdict.Kind == VerdictVMap {
		return fmt.Sprintf("%s: %s -> %s", s.Chain, s.Rule, s.Verdict)
	}
	return s.Chain + ": " + s.Rule.String()
}

// Trace walks the base chains of r as the kernel would for p, and returns
// VerdictAccept or VerdictDrop with the steps that decided, in order: the
// prerouting hook's (where routing has not chosen the output interface
// yet), then the forward hook's, or the input hook's when p.ToHost or a
// TProxy rule took the packet, each hook's in priority order. An accept
// ends one base chain only; a drop is final; a base chain that falls
// through or returns accepts (policy accept, a step for the forward and
// input hooks only). A packet a TProxy rule took ends with a StepTProxy
// step: it is delivered to the local socket. Dynamic sets hold what
// p.Learned says (nothing without it), never their Elems.
func Trace(r Ruleset, p Packet) (VerdictKind, []Step) {
	if p.CtState == 0 {
		p.CtState = CtNew
	}
	p.Src, p.Dst = p.Src.Unmap(), p.Dst.Unmap()
	t := tracer{r: r, p: p, mark: p.Mark}
	t.p.OutIface, t.p.OutGroup = "", 0
	if t.hook(HookPrerouting) == VerdictDrop {
		return VerdictDrop, t.steps
	}
	t.p.OutIface, t.p.OutGroup = p.OutIface, p.OutGroup
	hook := HookForward
	if p.ToHost || t.proxied.Rule.TProxy != nil {
		hook = HookInput
	}
	if t.hook(hook) == VerdictDrop {
		return VerdictDrop, t.steps
	}
	if t.proxied.Rule.TProxy != nil {
		t.steps = append(t.steps, t.proxied)
	}
	return VerdictAccept, t.steps
}

// hook walks the filter base chains of hook h in priority order:
// VerdictDrop when one drops the packet.
func (t *tracer) hook(h Hook) VerdictKind {
	var base []Chain
	for _, c := range t.r.Chains {
		if c.Base != nil && c.Base.Type == "filter" && c.Base.Hook == h {
			base = append(base, c)
		}
	}
	sort.SliceStable(base, func(i, j int) bool { return base[i].Base.Priority < base[j].Base.Priority })
	for _, c := range base {
		v := t.chain(c, 0)
		if v == VerdictDrop {
			return VerdictDrop
		}
		if v == VerdictNone && h != HookPrerouting {
			t.end(StepPolicy, c.Name, VerdictAccept)
		}
	}
	return VerdictAccept
}

type tracer struct {
	r     Ruleset
	p     Packet
	mark  uint32 // the packet mark, as rules rewrite it
	steps []Step
	// proxied is the StepTProxy step of the TProxy rule that took the
	// packet, if one did (its Rule.TProxy is set then).
	proxied Step
}

// end records a step that is no rule.
func (t *tracer) end(k StepKind, chain string, v VerdictKind) {
	t.steps = append(t.steps, Step{Kind: k, Chain: chain, Index: -1, Verdict: Verdict{Kind: v}})
}

// chain returns VerdictAccept, VerdictDrop, or VerdictNone (fell through).
func (t *tracer) chain(c Chain, depth int) VerdictKind {
	if depth > maxJumpDepth {
		t.end(StepDepthExceeded, c.Name, VerdictDrop)
		return VerdictDrop
	}
	for i, rule := range c.Rules {
		if rule.Log != nil && rule.Verdict.Kind == VerdictNone || !t.matches(rule.Matches) {
			continue // a log rule without a verdict decides nothing
		}
		if m := rule.Mark; m != nil { // the statement runs before a map lookup
			t.mark = t.mark&^m.Mask | m.Value
		}
		if rule.TProxy != nil {
			if t.p.ProxyDown {
				continue // no socket: the rule stops, its mark stays
			}
			t.proxied = Step{Kind: StepTProxy, Chain: c.Name, Index: -1, Rule: rule, Owner: rule.Owner, Verdict: Verdict{Kind: VerdictAccept}}
		}
		v := rule.Verdict
		if v.Kind == VerdictVMap {
			e, ok := t.lookup(v.Map, 0, v.Fields)
			if !ok {
				continue
			}
			v = e.MapVerdict()
		}
		t.steps = append(t.steps, Step{Kind: StepRule, Chain: c.Name, Index: i, Rule: rule, Owner: rule.Owner, Verdict: v})
		switch v.Kind {
		case VerdictAccept, VerdictDrop:
			return v.Kind
		case VerdictReturn:
			return VerdictNone
		case VerdictJump:
			target, ok := t.r.Chain(v.Chain)
			if !ok {
				t.end(StepMissingChain, v.Chain, VerdictDrop)
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
			// A Packet has no route: the test never matches in a trace.
			ok = false
		case MatchMark:
			ok = (t.mark&m.Mark == m.Mark) != m.Negate
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
	if s.Dynamic {
		return Elem{}, id == 0 && !s.Map && t.learned(set, fs)
	}
	for _, e := range s.Elems {
		if elemContains(e, key) {
			return e, true
		}
	}
	return Elem{}, false
}

// learned says whether the Dynamic set holds the packet's addresses of
// fields fs, as Packet.Learned tells.
func (t *tracer) learned(set string, fs []Field) bool {
	if t.p.Learned == nil {
		return false
	}
	key := make([]netip.Addr, len(fs))
	for i, f := range fs {
		switch f {
		case FieldIPSaddr, FieldIP6Saddr:
			key[i] = t.p.Src
		case FieldIPDaddr, FieldIP6Daddr:
			key[i] = t.p.Dst
		default:
			return false
		}
	}
	return t.p.Learned(set, key)
}

func elemContains(e Elem, key []string) bool {
	for i, k := range key {
		if k < e.Key[i].From || k > e.Key[i].To {
			return false
		}
	}
	return true
}

// JoinSteps is the steps as String prints them, separated by sep.
func JoinSteps(steps []Step, sep string) string {
	lines := make([]string, len(steps))
	for i, s := range steps {
		lines[i] = s.String()
	}
	return strings.Join(lines, sep)
}
