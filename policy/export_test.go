package policy

// What the tests of package policy_test need of policy's internals.

import (
	"fmt"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/weir-cni/weir/ruleset"
)

// MaxInlinePorts is maxInlinePorts, MapIngress4 mapIngress4.
const (
	MaxInlinePorts = maxInlinePorts
	MapIngress4    = mapIngress4
)

// WideSnapshot is wideSnapshot.
var WideSnapshot = wideSnapshot

// IngressChain is the chain of p's ingress rules in r, if p has one.
func IngressChain(r ruleset.Ruleset, p *networkingv1.NetworkPolicy) (ruleset.Chain, bool) {
	return r.Chain(policyChainName(dirIngress, policyKey(p)))
}

// Patch is patch.
var Patch = patch

// CacheKeys lists the selector results a Compiler keeps, with their
// members and users.
func CacheKeys(x *Compiler) []string {
	var out []string
	for id, e := range x.entries {
		out = append(out, fmt.Sprintf("%q %v: %d pods, %d users", id.ns+"/"+id.sel, id.local, len(e.members), len(e.users)))
	}
	for k, g := range x.groups {
		out = append(out, fmt.Sprintf("group %s %q: id %d, %d elements, %d users", k.set, k.def, g.id, len(g.elems), g.refs))
	}
	for def := range x.ids {
		out = append(out, fmt.Sprintf("id of %q", def))
	}
	for key, e := range x.nsEntries {
		out = append(out, fmt.Sprintf("ns %q: %v, %d users", key, e.members, len(e.users)))
	}
	slices.Sort(out)
	return out
}

// PodDeltaUsable tells whether x's next Compile of s would take its pod
// changes from s.PodDelta instead of comparing every pod.
func PodDeltaUsable(x *Compiler, s Snapshot) bool { return x.podDeltaUsable(s.Pods, s.PodDelta) }
