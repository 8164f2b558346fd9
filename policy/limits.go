package policy

import networkingv1 "k8s.io/api/networking/v1"

// Per-policy caps. A policy's rules and set elements grow as its peers +
// ports (see compileRule), but one policy of the API's largest size still
// holds tens of thousands of those, and each rule whose selector peers
// match a different set of pods adds a group of up to every pod of the
// cluster. So one policy is compiled only while it stays within both caps;
// past either, it is not applied at all — never in part — and the problem
// is reported (agent log, `weirctl status`, weir_policy_problems). It
// fails closed: the pods it selects stay isolated, as the API says a
// policy selecting them makes them, and it allows nothing; other policies
// selecting them still allow what they allow.
const (
	// MaxPolicyItems bounds what a policy writes: its rules, peers, ipBlock
	// excepts and ports, counted in the spec before anything is compiled.
	// The API accepts policies of ≈ 100,000 of them (1.5 MiB); real ones
	// hold tens.
	MaxPolicyItems = 10_000
	// MaxPolicyElements bounds the set elements a policy's rules look up,
	// counted per group it uses (a group shared with other policies counts
	// for each) and per family, each selector peer's pods at most once per
	// rule: every pod of a 100,000-pod cluster, dual-stack, in two rules
	// of different peers.
	MaxPolicyElements = 400_000
)

// elementCap is MaxPolicyElements; tests lower it.
var elementCap = MaxPolicyElements

// policyItems counts the rules, peers, excepts and ports of a policy spec.
func policyItems(s *networkingv1.NetworkPolicySpec) int {
	n := 0
	for _, r := range s.Ingress {
		n += 1 + peerItems(r.From) + len(r.Ports)
	}
	for _, r := range s.Egress {
		n += 1 + peerItems(r.To) + len(r.Ports)
	}
	return n
}

func peerItems(list []networkingv1.NetworkPolicyPeer) int {
	n := len(list)
	for _, p := range list {
		if p.IPBlock != nil {
			n += len(p.IPBlock.Except)
		}
	}
	return n
}

// charge counts n more elements against the policy's cap: false, and the
// policy over it, when they do not fit. Elements are charged before they
// are computed, so a policy over the cap costs no more than the cap.
func (c *policyBuilder) charge(n int) bool {
	if c.over {
		return false
	}
	c.elems += n
	c.over = c.elems > elementCap
	return !c.over
}
