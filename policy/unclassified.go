package policy

import (
	"slices"

	"github.com/weir-cni/weir/nsgroup"
	"github.com/weir-cni/weir/ruleset"
)

// The default verdict for a pod the agent has not classified.
//
// The pod maps hold the local pods the agent knows. A pod it does not know
// yet — wired by a fail-open plugin ("failClosed": false) that the agent
// did not confirm — is in none of them, and its address alone does not
// tell the kernel its namespace. Its host veth does: at ADD the plugin puts
// it in the link group nsgroup.Of(K8S_POD_NAMESPACE), before the veth comes
// up. So each forward base chain ends, after its pod map, with
//
//	iifname "weir*" iifgroup @egress-groups ip saddr != @local-pods4 counter name "unclassified-egress" drop
//	oifname "weir*" oifgroup @ingress-groups ip daddr != @local-pods4 counter name "unclassified-ingress" drop
//
// (and the ip6 twins): a packet from (to) a pod interface whose address no
// local pod of the agent's view has, in a namespace where some policy has
// Egress (Ingress) in its policyTypes, is dropped. The agent does not know
// the pod's labels, so any such policy counts, whether or not its
// podSelector would select the pod: the pod fails closed in that direction
// until the agent classifies it. Once it does, the pod's address joins
// local-pods4/6, these rules no longer match, and the pod map decides as
// for any other pod.
//
// Everything before the pod maps still applies, as to any pod: replies of
// allowed connections (`ct state established,related`), traffic between
// the pod and its node, and a pod to itself when the agent knows it (an
// unclassified pod's traffic to itself through the node, hairpinned by a
// Service, is dropped in a namespace that isolates egress or ingress).
//
// Cost: two hash lookups after a string compare, for new connections that
// no pod map decided, whatever the number of policies and namespaces.
// The group sets hold one element per namespace with an isolating policy.
// Two namespaces sharing a group (see nsgroup.Of) only ever deny more, and
// only for unclassified pods. A link in the default group 0 (another
// plugin's, a pod wired without K8S_POD_NAMESPACE, such as by cnitool) is
// never in a group set.

// unclassifiedRules returns the rules that end the forward base chain of
// direction d for pod interfaces named prefix*.
func unclassifiedRules(prefix string, d direction) []ruleset.Rule {
	iface := ruleset.Match{Kind: ruleset.MatchOifname, IfPrefix: prefix}
	groups := ruleset.Match{Kind: ruleset.MatchLookup, Fields: []ruleset.Field{ruleset.FieldOifgroup}, Set: setGroupsIn}
	counter := CounterUnclassifiedIngress
	if d == dirEgress {
		iface = ruleset.Match{Kind: ruleset.MatchIifname, IfPrefix: prefix}
		groups = ruleset.Match{Kind: ruleset.MatchLookup, Fields: []ruleset.Field{ruleset.FieldIifgroup}, Set: setGroupsEg}
		counter = CounterUnclassifiedEgress
	}
	var out []ruleset.Rule
	for _, f := range families {
		pod, _ := f.ends(d)
		out = append(out, ruleset.Rule{
			Matches: []ruleset.Match{iface, groups, {Kind: ruleset.MatchLookup, Fields: []ruleset.Field{pod}, Set: f.localPods, Negate: true}},
			Counter: counter,
			Verdict: ruleset.Verdict{Kind: ruleset.VerdictDrop},
			Owner:   ownerUnclassified(d),
		})
	}
	return out
}

// isolatingGroups returns the elements of the group sets: the link group
// of every namespace with a policy of Ingress type (in) and of Egress type
// (eg), sorted. A policy counts whatever it selects and whether or not it
// compiles: for a pod of unknown labels, any policy of the direction could
// select it.
func isolatingGroups(policies []*policyState) (in, eg []ruleset.Elem) {
	var gin, geg []uint32
	for _, ps := range policies {
		ingress, egress, _ := PolicyTypes(ps.pol)
		g := nsgroup.Of(ps.pol.Namespace)
		if ingress {
			gin = append(gin, g)
		}
		if egress {
			geg = append(geg, g)
		}
	}
	return groupElems(gin), groupElems(geg)
}

func groupElems(gs []uint32) []ruleset.Elem {
	slices.Sort(gs)
	gs = slices.Compact(gs)
	if len(gs) == 0 {
		return nil // as a Compiler that never saw a policy has it
	}
	out := make([]ruleset.Elem, 0, len(gs))
	for _, g := range gs {
		k := ruleset.IDBytes(g)
		out = append(out, ruleset.Elem{Key: []ruleset.Range{{From: k, To: k}}})
	}
	return out
}
