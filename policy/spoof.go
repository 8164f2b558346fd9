package policy

import (
	"net/netip"

	"github.com/weir-cni/weir/ruleset"
)

// Source-address validation (anti-spoofing).
//
// A pod holding CAP_NET_RAW (a default container capability) can send with
// any source address. Policy decides by address, so a spoofed source would
// skip the sender's egress policy, pass another pod's ingress as an allowed
// peer, or leave masqueraded; IPv6 has no rp_filter at all, and IPv4's is a
// per-interface sysctl weir does not own. So the table drops, before
// anything else sees it, every packet that comes in on a pod interface
// from a source that interface does not own:
//
//	chain prerouting-spoof { type filter hook prerouting priority raw
//	  iifname "weir*" fib saddr . iif oif missing jump spoof-drop
//	chain spoof-drop {
//	  ip saddr @unrouted4 return
//	  ip6 saddr @unrouted6 return
//	  counter name "spoofed" drop
//
// The test every packet from a pod pays is one rule of an interface name
// and a FIB lookup, for both families (the inet fib expression reads the
// family of the packet): the exemptions below, a set lookup each, are
// looked at only for the few packets that fail it, in spoof-drop. Checking
// them first, per family, cost every packet a family test, an address
// load and a set lookup, and the other family's rule its interface name
// again: perf on bench-datapath's connection phase put that chain's own
// work at about twice the NAT bindings', and this one's at under half of
// it. The drops are the same.
//
// Which sources a pod owns is read from the routing table, not from a map
// of interface to addresses: the plugin routes each pod address (/32,
// /128) through the pod's host veth before it brings the veth up, so
// "the route back to the source leaves through the interface the packet
// came in on" (a strict reverse-path test, `fib saddr . iif`) holds for
// exactly the pod's own addresses from its first packet on. The agent
// learns pod addresses later, from the API server or an announcement, and
// does not know the host veth of a pod at all: a map it filled would be
// late for new pods and wrong across address reuse. A source routed
// elsewhere (another local pod, a remote pod, the outside world) or owned
// by the node itself (a local route is no route out) fails the test.
//
// The check is limited to interfaces named with the plugin's host-side
// prefix (hostInterfacePrefix, Snapshot.PodInterfacePrefix): the node's
// own uplinks may see asymmetric routing weir must not break. Exempt are
// the sources the kernel never routes: 0.0.0.0, and IPv6's :: and
// fe80::/10, which pods use for neighbour discovery, router solicitation,
// MLD and DAD. The kernel neither forwards those nor answers them beyond
// the link, so letting them reach the node is no spoofing.
//
// The chain hooks prerouting at priority raw (-300), before conntrack
// (-200) and DNAT (-100): a spoofed packet creates no conntrack entry, is
// not translated and is checked whether it would be forwarded or delivered
// to the node. CounterSpoofed counts the drops.

// spoof adds the anti-spoofing chain and its sets for pod interfaces named
// prefix*.
func spoof(prefix string, sets []ruleset.Set, chains []ruleset.Chain) ([]ruleset.Set, []ruleset.Chain) {
	v6 := []netip.Prefix{netip.MustParsePrefix("::/128"), netip.MustParsePrefix("fe80::/10")} // sorted
	sets = append(sets,
		ruleset.Set{Name: setUnrouted4, Key: []ruleset.Type{ruleset.TypeIPv4}, Comment: "sources the kernel never routes",
			Elems: []ruleset.Elem{{Key: []ruleset.Range{single(netip.IPv4Unspecified())}}}},
		ruleset.Set{Name: setUnrouted6, Key: []ruleset.Type{ruleset.TypeIPv6}, Interval: true, Comment: "sources the kernel never routes",
			Elems: intervalElems(prefixIntervals(v6))})
	owner := ruleset.Owner{Kind: ruleset.OwnerSpoof}
	check := ruleset.Chain{Name: chainSpoof, Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookPrerouting, Priority: ruleset.PriorityRaw},
		Rules: []ruleset.Rule{{
			Matches: []ruleset.Match{{Kind: ruleset.MatchIifname, IfPrefix: prefix}, {Kind: ruleset.MatchRPFail}},
			Verdict: ruleset.Verdict{Kind: ruleset.VerdictJump, Chain: chainSpoofDrop},
			Owner:   owner,
		}}}
	drop := ruleset.Chain{Name: chainSpoofDrop}
	for _, f := range families {
		drop.Rules = append(drop.Rules, ruleset.Rule{
			Matches: []ruleset.Match{{Kind: ruleset.MatchLookup, Fields: []ruleset.Field{f.saddr}, Set: f.unrouted}},
			Verdict: ruleset.Verdict{Kind: ruleset.VerdictReturn},
			Owner:   owner,
		})
	}
	drop.Rules = append(drop.Rules, ruleset.Rule{Counter: CounterSpoofed, Verdict: ruleset.Verdict{Kind: ruleset.VerdictDrop}, Owner: owner})
	return sets, append(chains, check, drop)
}
