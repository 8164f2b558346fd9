package iptables

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weir-cni/weir/nft"
)

func ip4(s string) string { return string(netip.MustParseAddr(s).AsSlice()) }

func one(s string) nft.Range { return nft.Range{From: s, To: s} }

func rng(a, b string) nft.Range { return nft.Range{From: a, To: b} }

func pp(proto byte, lo, hi uint16) nft.Elem {
	return nft.Elem{Key: []nft.Range{one(string([]byte{proto})), rng(string([]byte{byte(lo >> 8), byte(lo)}), string([]byte{byte(hi >> 8), byte(hi)}))}}
}

func lk(set string, neg bool, fs ...nft.Field) nft.Match {
	return nft.Match{Kind: nft.MatchLookup, Set: set, Fields: fs, Negate: neg}
}

var (
	acceptV = nft.Verdict{Kind: nft.VerdictAccept}
	dropV   = nft.Verdict{Kind: nft.VerdictDrop}
	jumpV   = func(c string) nft.Verdict { return nft.Verdict{Kind: nft.VerdictJump, Chain: c} }
	portsM  = []nft.Field{nft.FieldL4Proto, nft.FieldTHDport}
)

// generalRuleset uses every construct of the model, beyond what Compile
// emits today: three base chains on one hook, negated lookups, two lookups
// AND-ed, a verdict map with accept, drop, continue and jump elements, a
// chain reached from two base chains, and chains that fall through.
func generalRuleset() nft.Ruleset {
	fwd := func(prio int) *nft.Base { return &nft.Base{Type: "filter", Hook: nft.HookForward, Priority: prio} }
	rs := nft.Ruleset{
		Sets: []nft.Set{
			{Name: "a", Key: []nft.Type{nft.TypeIPv4}, Interval: true, Elems: []nft.Elem{
				{Key: []nft.Range{rng(ip4("10.0.0.0"), ip4("10.0.0.127"))}},
				{Key: []nft.Range{one(ip4("10.0.1.5"))}},
				{Key: []nft.Range{rng(ip4("10.0.2.3"), ip4("10.0.2.9"))}},
			}},
			{Name: "b", Key: []nft.Type{nft.TypeProto, nft.TypePort}, Interval: true, Elems: []nft.Elem{
				pp(6, 80, 81), pp(17, 53, 53), pp(132, 7, 7),
			}},
			{Name: "c", Key: []nft.Type{nft.TypeIPv4}, Elems: []nft.Elem{{Key: []nft.Range{one(ip4("10.0.0.9"))}}}},
			{Name: "m", Key: []nft.Type{nft.TypeIPv4}, Map: true, Elems: []nft.Elem{
				{Key: []nft.Range{one(ip4("10.0.0.1"))}, Verdict: acceptV},
				{Key: []nft.Range{one(ip4("10.0.0.2"))}, Verdict: dropV},
				{Key: []nft.Range{one(ip4("10.0.0.3"))}, Verdict: jumpV("shared")},
				{Key: []nft.Range{one(ip4("10.0.0.4"))}},
				{Key: []nft.Range{one(ip4("10.0.0.5"))}, Verdict: jumpV("through")},
			}},
		},
		Chains: []nft.Chain{
			{Name: "b1", Base: fwd(-5), Rules: []nft.Rule{
				{Matches: []nft.Match{{Kind: nft.MatchCtState, CtStates: nft.CtEstablished}}, Verdict: acceptV},
				{Matches: []nft.Match{lk("c", true, nft.FieldIPSaddr), lk("c", false, nft.FieldIPDaddr)}, Verdict: dropV},
				{Verdict: nft.Verdict{Kind: nft.VerdictVMap, Map: "m", Fields: []nft.Field{nft.FieldIPSaddr}}},
				{Matches: []nft.Match{lk("a", false, nft.FieldIPSaddr), lk("b", false, portsM...)}, Verdict: jumpV("shared")},
				{Matches: []nft.Match{{Kind: nft.MatchPort, Proto: 17, PortFrom: 1000, PortTo: 2000}}, Verdict: acceptV},
			}},
			{Name: "b2", Base: fwd(0), Rules: []nft.Rule{
				{Matches: []nft.Match{lk("a", false, nft.FieldIPDaddr), lk("b", false, portsM...)}, Verdict: acceptV, Comment: "and"},
				{Verdict: jumpV("shared")},
				{Matches: []nft.Match{lk("a", true, nft.FieldIPDaddr)}, Verdict: dropV},
			}},
			{Name: "b3", Base: fwd(10), Rules: []nft.Rule{
				{Verdict: nft.Verdict{Kind: nft.VerdictVMap, Map: "m", Fields: []nft.Field{nft.FieldIPDaddr}}},
				{Matches: []nft.Match{{Kind: nft.MatchCtState, CtStates: nft.CtInvalid}}, Verdict: dropV},
			}},
			{Name: "shared", Rules: []nft.Rule{
				{Matches: []nft.Match{lk("c", false, nft.FieldIPSaddr)}, Verdict: acceptV},
				{Matches: []nft.Match{lk("c", false, nft.FieldIPDaddr)}, Verdict: dropV},
				{Matches: []nft.Match{{Kind: nft.MatchPort, Proto: 6, PortFrom: 22, PortTo: 22}}, Verdict: acceptV},
				{Verdict: jumpV("through")},
			}},
			{Name: "through", Rules: []nft.Rule{
				{Matches: []nft.Match{lk("c", false, nft.FieldIPDaddr)}, Verdict: acceptV},
			}},
		},
	}
	return rs
}

// TestGeneralModelMatchesNFTTrace checks every construct against nft.Trace
// on every combination of interesting packets.
func TestGeneralModelMatchesNFTTrace(t *testing.T) {
	rs := generalRuleset()
	r := renderBoth(rs)
	var addrs []netip.Addr
	for _, s := range []string{"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6",
		"10.0.0.8", "10.0.0.9", "10.0.0.10", "10.0.0.127", "10.0.0.128", "10.0.1.4", "10.0.1.5", "10.0.1.6",
		"10.0.2.2", "10.0.2.3", "10.0.2.9", "10.0.2.10"} {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	n, fails := 0, 0
	for _, src := range addrs {
		for _, dst := range addrs {
			for _, port := range []uint16{7, 22, 53, 79, 80, 81, 82, 999, 1000, 2000, 2001} {
				for _, proto := range []uint8{nft.ProtoTCP, nft.ProtoUDP, nft.ProtoSCTP} {
					for _, st := range []uint32{nft.CtNew, nft.CtEstablished, nft.CtInvalid} {
						p := nft.Packet{Src: src, Dst: dst, Proto: proto, DPort: port, CtState: st}
						n++
						want, ws := nft.Trace(rs, p)
						got, gs := r.trace(p)
						if got != want && fails < 5 {
							fails++
							t.Errorf("%s: iptables %s, nftables %s\nnft:\n%s\niptables:\n%s", packetString(p),
								verdictName(got), verdictName(want), strings.Join(ws, "\n"), strings.Join(gs, "\n"))
						}
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
	rs.Chains = []nft.Chain{{Name: "b2", Base: &nft.Base{Type: "filter", Hook: nft.HookForward}, Rules: []nft.Rule{
		{Matches: []nft.Match{lk("a", false, nft.FieldIPDaddr), lk("b", false, portsM...)}, Verdict: acceptV},
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
