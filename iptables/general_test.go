package iptables

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/weir-cni/weir/ruleset"
)

func ip4(s string) string { return string(netip.MustParseAddr(s).AsSlice()) }

func one(s string) ruleset.Range { return ruleset.Range{From: s, To: s} }

func rng(a, b string) ruleset.Range { return ruleset.Range{From: a, To: b} }

func pp(proto byte, lo, hi uint16) ruleset.Elem {
	return ruleset.Elem{Key: []ruleset.Range{one(string([]byte{proto})), rng(string([]byte{byte(lo >> 8), byte(lo)}), string([]byte{byte(hi >> 8), byte(hi)}))}}
}

func lk(set string, neg bool, fs ...ruleset.Field) ruleset.Match {
	return ruleset.Match{Kind: ruleset.MatchLookup, Set: set, Fields: fs, Negate: neg}
}

var (
	acceptV = ruleset.Verdict{Kind: ruleset.VerdictAccept}
	dropV   = ruleset.Verdict{Kind: ruleset.VerdictDrop}
	returnV = ruleset.Verdict{Kind: ruleset.VerdictReturn}
	jumpV   = func(c string) ruleset.Verdict { return ruleset.Verdict{Kind: ruleset.VerdictJump, Chain: c} }
	portsM  = []ruleset.Field{ruleset.FieldL4Proto, ruleset.FieldTHDport}
)

// markM tests the mark bits (MatchMark).
func markM(bits uint32, negate bool) ruleset.Match {
	return ruleset.Match{Kind: ruleset.MatchMark, Mark: bits, Negate: negate}
}

// setM sets the bits of mask to value (Rule.Mark).
func setM(mask, value uint32) *ruleset.MarkSet { return &ruleset.MarkSet{Mask: mask, Value: value} }

// portM is a MatchPort of proto and a port range.
func portM(proto uint8, lo, hi uint16) ruleset.Match {
	return ruleset.Match{Kind: ruleset.MatchPort, Proto: proto, PortFrom: lo, PortTo: hi}
}

// generalRuleset uses every construct of the model, beyond what Compile
// emits today: three base chains on one hook, negated lookups, two lookups
// AND-ed, a verdict map with accept, drop, continue and jump elements, a
// chain reached from two base chains, and chains that fall through; the
// constructs of the tiers (see markRules) on the forward and input hooks;
// and log rules (see logRules).
func generalRuleset() ruleset.Ruleset {
	fwd := func(prio int) *ruleset.Base {
		return &ruleset.Base{Type: "filter", Hook: ruleset.HookForward, Priority: prio}
	}
	rs := ruleset.Ruleset{
		Sets: []ruleset.Set{
			{Name: "a", Key: []ruleset.Type{ruleset.TypeIPv4}, Interval: true, Elems: []ruleset.Elem{
				{Key: []ruleset.Range{rng(ip4("10.0.0.0"), ip4("10.0.0.127"))}},
				{Key: []ruleset.Range{one(ip4("10.0.1.5"))}},
				{Key: []ruleset.Range{rng(ip4("10.0.2.3"), ip4("10.0.2.9"))}},
			}},
			{Name: "b", Key: []ruleset.Type{ruleset.TypeProto, ruleset.TypePort}, Interval: true, Elems: []ruleset.Elem{
				pp(6, 80, 81), pp(17, 53, 53), pp(132, 7, 7),
			}},
			{Name: "c", Key: []ruleset.Type{ruleset.TypeIPv4}, Elems: []ruleset.Elem{{Key: []ruleset.Range{one(ip4("10.0.0.9"))}}}},
			{Name: "m", Key: []ruleset.Type{ruleset.TypeIPv4}, Map: true, Elems: []ruleset.Elem{
				{Key: []ruleset.Range{one(ip4("10.0.0.1"))}, Verdict: &acceptV},
				{Key: []ruleset.Range{one(ip4("10.0.0.2"))}, Verdict: &dropV},
				{Key: []ruleset.Range{one(ip4("10.0.0.3"))}, Verdict: new(jumpV("shared"))},
				{Key: []ruleset.Range{one(ip4("10.0.0.4"))}},
				{Key: []ruleset.Range{one(ip4("10.0.0.5"))}, Verdict: new(jumpV("through"))},
			}},
		},
		Chains: []ruleset.Chain{
			{Name: "b1", Base: fwd(-5), Rules: []ruleset.Rule{
				{Matches: []ruleset.Match{{Kind: ruleset.MatchCtState, CtStates: ruleset.CtEstablished}}, Verdict: acceptV},
				{Matches: []ruleset.Match{lk("c", true, ruleset.FieldIPSaddr), lk("c", false, ruleset.FieldIPDaddr)}, Verdict: dropV},
				{Verdict: ruleset.Verdict{Kind: ruleset.VerdictVMap, Map: "m", Fields: []ruleset.Field{ruleset.FieldIPSaddr}}},
				{Matches: []ruleset.Match{lk("a", false, ruleset.FieldIPSaddr), lk("b", false, portsM...)}, Verdict: jumpV("shared")},
				{Matches: []ruleset.Match{{Kind: ruleset.MatchPort, Proto: 17, PortFrom: 1000, PortTo: 2000}}, Verdict: acceptV},
			}},
			{Name: "b2", Base: fwd(0), Rules: []ruleset.Rule{
				{Matches: []ruleset.Match{lk("a", false, ruleset.FieldIPDaddr), lk("b", false, portsM...)}, Verdict: acceptV,
					Owner: ruleset.Owner{Kind: ruleset.OwnerPolicyRule, Namespace: "ns", Policy: "and", Direction: ruleset.Ingress}},
				{Verdict: jumpV("shared")},
				{Matches: []ruleset.Match{lk("a", true, ruleset.FieldIPDaddr)}, Verdict: dropV},
			}},
			{Name: "b3", Base: fwd(10), Rules: []ruleset.Rule{
				{Verdict: ruleset.Verdict{Kind: ruleset.VerdictVMap, Map: "m", Fields: []ruleset.Field{ruleset.FieldIPDaddr}}},
				{Matches: []ruleset.Match{{Kind: ruleset.MatchCtState, CtStates: ruleset.CtInvalid}}, Verdict: dropV},
			}},
			{Name: "shared", Rules: []ruleset.Rule{
				{Matches: []ruleset.Match{lk("c", false, ruleset.FieldIPSaddr)}, Verdict: acceptV},
				{Matches: []ruleset.Match{lk("c", false, ruleset.FieldIPDaddr)}, Verdict: dropV},
				{Matches: []ruleset.Match{{Kind: ruleset.MatchPort, Proto: 6, PortFrom: 22, PortTo: 22}}, Verdict: acceptV},
				{Verdict: jumpV("through")},
			}},
			{Name: "through", Rules: []ruleset.Rule{
				{Matches: []ruleset.Match{lk("c", false, ruleset.FieldIPDaddr)}, Verdict: acceptV},
			}},
		},
	}
	sets, chains := markRules()
	rs.Sets = append(rs.Sets, sets...)
	rs.Chains = append(rs.Chains, chains...)
	rs.Chains = append(rs.Chains, logRules()...)
	slices.SortFunc(rs.Chains, func(a, b ruleset.Chain) int { return strings.Compare(a.Name, b.Name) })
	return rs
}

// markRules are the constructs of the ClusterNetworkPolicy tiers in every
// shape, beyond the ones Compile emits: marks tested (negated, several
// bits) and set (bits set, cleared, both) alone or before an accept, a
// drop, a jump, a return or a verdict map, inline or after lookups (two,
// negated); returns inline, after lookups and from a verdict map (whose
// jump elements must go on after the rule), in base and regular chains; a
// selection chain that clears the mark of a pass; and two base chains on
// the input hook.
func markRules() ([]ruleset.Set, []ruleset.Chain) {
	v4 := func(s string) []ruleset.Range { return []ruleset.Range{one(ip4(s))} }
	sets := []ruleset.Set{{Name: "rm", Key: []ruleset.Type{ruleset.TypeIPv4}, Map: true, Elems: []ruleset.Elem{
		{Key: v4("10.0.0.6"), Verdict: &returnV},
		{Key: v4("10.0.0.8"), Verdict: new(jumpV("pol3"))},
		{Key: v4("10.0.0.9"), Verdict: &dropV},
		{Key: v4("10.0.0.10")},
		{Key: v4("10.0.1.5"), Verdict: &acceptV},
	}}}
	saddrA, daddrA := lk("a", false, ruleset.FieldIPSaddr), lk("a", false, ruleset.FieldIPDaddr)
	vmapRM := func(f ruleset.Field) ruleset.Verdict {
		return ruleset.Verdict{Kind: ruleset.VerdictVMap, Map: "rm", Fields: []ruleset.Field{f}}
	}
	established := ruleset.Rule{Matches: []ruleset.Match{{Kind: ruleset.MatchCtState, CtStates: ruleset.CtEstablished}}, Verdict: acceptV}
	hook := func(h ruleset.Hook, prio int) *ruleset.Base {
		return &ruleset.Base{Type: "filter", Hook: h, Priority: prio}
	}
	chains := []ruleset.Chain{
		{Name: "b0", Base: hook(ruleset.HookForward, -10), Rules: []ruleset.Rule{
			{Matches: []ruleset.Match{saddrA}, Mark: setM(0x10, 0x10), Counter: "mark-a"},
			{Matches: []ruleset.Match{portM(ruleset.ProtoTCP, 22, 22)}, Mark: setM(0x3, 0x1)},
			{Verdict: jumpV("sel")},
			{Matches: []ruleset.Match{markM(0x1, false), daddrA}, Mark: setM(0x1, 0), Verdict: dropV, Counter: "drop-marked"},
			{Matches: []ruleset.Match{markM(0x10, true), portM(ruleset.ProtoUDP, 53, 53)}, Mark: setM(0xff, 0x20), Verdict: acceptV},
			{Verdict: vmapRM(ruleset.FieldIPSaddr)},
			{Matches: []ruleset.Match{markM(0x20, false)}, Verdict: returnV},
			{Matches: []ruleset.Match{daddrA}, Mark: setM(0x40, 0x40), Verdict: jumpV("pol2")},
			{Matches: []ruleset.Match{markM(0x50, false)}, Verdict: dropV, Counter: "both-bits"},
		}},
		{Name: "in1", Base: hook(ruleset.HookInput, 0), Rules: []ruleset.Rule{
			established,
			{Verdict: vmapRM(ruleset.FieldIPDaddr)},
			{Matches: []ruleset.Match{saddrA}, Verdict: jumpV("sel")},
			{Matches: []ruleset.Match{markM(0x200, false)}, Verdict: dropV},
		}},
		{Name: "in2", Base: hook(ruleset.HookInput, 5), Rules: []ruleset.Rule{
			established,
			{Matches: []ruleset.Match{markM(0x100, true), portM(ruleset.ProtoTCP, 22, 22)}, Verdict: dropV, Counter: "in-drop"},
			{Matches: []ruleset.Match{portM(ruleset.ProtoUDP, 53, 53)}, Mark: setM(0x400, 0x400), Verdict: returnV},
			{Matches: []ruleset.Match{daddrA}, Verdict: dropV},
		}},
		{Name: "pol", Rules: []ruleset.Rule{
			{Matches: []ruleset.Match{saddrA, lk("b", false, portsM...)}, Mark: setM(0x100, 0x100), Verdict: returnV, Counter: "pass"},
			{Matches: []ruleset.Match{lk("a", true, ruleset.FieldIPDaddr)}, Mark: setM(0x100, 0x100), Verdict: returnV},
			{Matches: []ruleset.Match{portM(ruleset.ProtoTCP, 80, 80)}, Verdict: dropV, Counter: "pol-drop"},
		}},
		{Name: "pol2", Rules: []ruleset.Rule{
			{Matches: []ruleset.Match{markM(0x200, false)}, Verdict: acceptV},
			{Matches: []ruleset.Match{portM(ruleset.ProtoUDP, 1000, 2000)}, Mark: setM(0x200, 0x200), Verdict: vmapRM(ruleset.FieldIPDaddr)},
			{Matches: []ruleset.Match{lk("c", false, ruleset.FieldIPSaddr)}, Mark: setM(0x200, 0x200)},
		}},
		{Name: "pol3", Rules: []ruleset.Rule{
			{Matches: []ruleset.Match{lk("c", false, ruleset.FieldIPSaddr)}, Verdict: returnV},
			{Matches: []ruleset.Match{portM(ruleset.ProtoTCP, 81, 81)}, Verdict: acceptV},
			{Mark: setM(0x10, 0)},
			{Matches: []ruleset.Match{markM(0x1, true)}, Verdict: returnV},
		}},
		{Name: "sel", Rules: []ruleset.Rule{
			{Verdict: jumpV("pol")},
			{Matches: []ruleset.Match{markM(0x100, false)}, Mark: setM(0x100, 0), Verdict: returnV},
			{Verdict: jumpV("pol2")},
			{Matches: []ruleset.Match{lk("b", false, portsM...)}, Verdict: returnV, Counter: "sel-ret"},
			{Matches: []ruleset.Match{saddrA}, Verdict: dropV},
		}},
	}
	return sets, chains
}

// logRules are log statements alone (inline, after a lookup) and before
// a verdict: a drop and an accept inline and after lookups (a Deny rule of
// a ClusterNetworkPolicy when denied packets are logged), a jump after a
// mark, a verdict map, a return after a mark; each log rate-limited or
// not. They run first on the forward hook.
func logRules() []ruleset.Chain {
	log := func(n int, rate uint32) *ruleset.Log {
		return &ruleset.Log{Prefix: "log-" + strconv.Itoa(n), Group: uint16(n), Rate: rate}
	}
	daddrA := lk("a", false, ruleset.FieldIPDaddr)
	return []ruleset.Chain{
		{Name: "lg", Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookForward, Priority: -20}, Rules: []ruleset.Rule{
			{Matches: []ruleset.Match{portM(ruleset.ProtoTCP, 7, 7)}, Log: log(1, 10), Verdict: dropV, Counter: "log-drop"},
			{Matches: []ruleset.Match{lk("c", false, ruleset.FieldIPSaddr), lk("b", false, portsM...)}, Log: log(2, 0), Verdict: acceptV, Counter: "log-accept"},
			{Matches: []ruleset.Match{lk("a", true, ruleset.FieldIPSaddr), portM(ruleset.ProtoTCP, 999, 999)}, Log: log(3, 10)},
			{Matches: []ruleset.Match{daddrA, portM(ruleset.ProtoUDP, 2000, 2000)}, Log: log(4, 10), Mark: setM(0x2, 0x2), Verdict: jumpV("logged")},
			{Matches: []ruleset.Match{markM(0x2, false)}, Log: log(5, 0)},
			{Matches: []ruleset.Match{daddrA, portM(ruleset.ProtoTCP, 22, 22)}, Log: log(6, 10), Mark: setM(0x4, 0x4)},
			{Matches: []ruleset.Match{portM(ruleset.ProtoUDP, 1000, 1000)}, Log: log(7, 10),
				Verdict: ruleset.Verdict{Kind: ruleset.VerdictVMap, Map: "rm", Fields: []ruleset.Field{ruleset.FieldIPDaddr}}},
			{Matches: []ruleset.Match{markM(0x200, false), portM(ruleset.ProtoTCP, 81, 81)}, Log: log(8, 10), Mark: setM(0x200, 0), Verdict: returnV, Counter: "log-return"},
			{Matches: []ruleset.Match{daddrA, lk("b", false, portsM...)}, Log: log(9, 10), Verdict: dropV, Counter: "log-drop-lookups"},
		}},
		{Name: "logged", Rules: []ruleset.Rule{
			{Matches: []ruleset.Match{markM(0x2, false), lk("c", false, ruleset.FieldIPSaddr)}, Log: log(10, 10), Verdict: dropV, Counter: "logged-drop"},
		}},
	}
}

// TestGeneralModelMatchesNFTTrace checks every construct against ruleset.Trace
// on every combination of interesting packets: the same verdict, and the
// same named counters.
func TestGeneralModelMatchesNFTTrace(t *testing.T) {
	d := newDifferential(t, generalRuleset())
	pkts := generalPackets()
	for _, p := range pkts {
		d.compare(p)
	}
	t.Logf("%d packets compared", len(pkts))
}

// generalPackets are every combination of interesting addresses, ports,
// protocols and conntrack states, forwarded and to the host, each with one
// of the marks generalRuleset tests or sets, in a scrambled turn so that
// every mark meets every other field.
func generalPackets() []ruleset.Packet {
	var addrs []netip.Addr
	for _, s := range []string{"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6",
		"10.0.0.8", "10.0.0.9", "10.0.0.10", "10.0.0.127", "10.0.0.128", "10.0.1.4", "10.0.1.5", "10.0.1.6",
		"10.0.2.2", "10.0.2.3", "10.0.2.9", "10.0.2.10"} {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	marks := []uint32{0, 0x1, 0x10, 0x20, 0x100, 0x200, 0x111}
	var out []ruleset.Packet
	for _, src := range addrs {
		for _, dst := range addrs {
			for _, port := range []uint16{7, 22, 53, 79, 80, 81, 82, 999, 1000, 2000, 2001} {
				for _, proto := range []uint8{ruleset.ProtoTCP, ruleset.ProtoUDP, ruleset.ProtoSCTP} {
					for _, st := range []uint32{ruleset.CtNew, ruleset.CtEstablished, ruleset.CtInvalid} {
						for _, toHost := range []bool{false, true} {
							mark := marks[uint32(len(out))*2654435761>>16%uint32(len(marks))]
							out = append(out, ruleset.Packet{Src: src, Dst: dst, Proto: proto, DPort: port, CtState: st, Mark: mark, ToHost: toHost})
						}
					}
				}
			}
		}
	}
	return out
}

// TestLookupsAreChainedNotMultiplied pins that a rule AND-ing a 3-element
// and a 3-element set costs 3+3 element rules, not 3×3.
func TestLookupsAreChainedNotMultiplied(t *testing.T) {
	rs := generalRuleset()
	rs.Chains = []ruleset.Chain{{Name: "b2", Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookForward}, Rules: []ruleset.Rule{
		{Matches: []ruleset.Match{lk("a", false, ruleset.FieldIPDaddr), lk("b", false, portsM...)}, Verdict: acceptV},
	}}}
	v4 := build(rs, false)
	total := 0
	for _, c := range v4.tables[0].chains {
		total += len(c.rules)
	}
	// WEIR-FORWARD: 1 jump; b2: 1 rule; then 3 + 3 element rules.
	if total != 1+1+3+3 {
		t.Errorf("got %d rules, want 8:\n%s", total, v4.text(nil))
	}
}

// TestSharedChainIsEmittedPerBaseChain pins that a chain reached from
// several base chains (b1 and b2 jump to it, b3's map too) exists once per
// meaning of its accept.
func TestSharedChainIsEmittedPerBaseChain(t *testing.T) {
	v4 := build(generalRuleset(), false)
	n := 0
	for _, c := range v4.tables[0].chains {
		if strings.HasPrefix(c.name, "WEIR-shared_via_") {
			n++
		}
	}
	if n != 3 {
		t.Errorf("got %d copies of the shared chain, want 3:\n%s", n, v4.text(nil))
	}
}
