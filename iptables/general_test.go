package iptables

import (
	"net/netip"
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
	jumpV   = func(c string) ruleset.Verdict { return ruleset.Verdict{Kind: ruleset.VerdictJump, Chain: c} }
	portsM  = []ruleset.Field{ruleset.FieldL4Proto, ruleset.FieldTHDport}
)

// generalRuleset uses every construct of the model, beyond what Compile
// emits today: three base chains on one hook, negated lookups, two lookups
// AND-ed, a verdict map with accept, drop, continue and jump elements, a
// chain reached from two base chains, and chains that fall through.
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
				{Key: []ruleset.Range{one(ip4("10.0.0.1"))}, Verdict: acceptV},
				{Key: []ruleset.Range{one(ip4("10.0.0.2"))}, Verdict: dropV},
				{Key: []ruleset.Range{one(ip4("10.0.0.3"))}, Verdict: jumpV("shared")},
				{Key: []ruleset.Range{one(ip4("10.0.0.4"))}},
				{Key: []ruleset.Range{one(ip4("10.0.0.5"))}, Verdict: jumpV("through")},
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
	return rs
}

// TestGeneralModelMatchesNFTTrace checks every construct against ruleset.Trace
// on every combination of interesting packets.
func TestGeneralModelMatchesNFTTrace(t *testing.T) {
	d := newDifferential(t, generalRuleset())
	var addrs []netip.Addr
	for _, s := range []string{"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6",
		"10.0.0.8", "10.0.0.9", "10.0.0.10", "10.0.0.127", "10.0.0.128", "10.0.1.4", "10.0.1.5", "10.0.1.6",
		"10.0.2.2", "10.0.2.3", "10.0.2.9", "10.0.2.10"} {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	n := 0
	for _, src := range addrs {
		for _, dst := range addrs {
			for _, port := range []uint16{7, 22, 53, 79, 80, 81, 82, 999, 1000, 2000, 2001} {
				for _, proto := range []uint8{ruleset.ProtoTCP, ruleset.ProtoUDP, ruleset.ProtoSCTP} {
					for _, st := range []uint32{ruleset.CtNew, ruleset.CtEstablished, ruleset.CtInvalid} {
						n++
						d.compare(ruleset.Packet{Src: src, Dst: dst, Proto: proto, DPort: port, CtState: st})
					}
				}
			}
		}
	}
	t.Logf("%d packets compared", n)
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
