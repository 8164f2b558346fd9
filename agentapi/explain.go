package agentapi

import "time"

// Explanation answers OpExplain: whether the ruleset the kernel holds lets
// a new connection from Src to Dst through, and the steps that decided.
type Explanation struct {
	Allowed bool   `json:"allowed"`
	Src     string `json:"src"`
	Dst     string `json:"dst"`
	// Steps are the rules the packet matched and the base chains it fell
	// through, in the order the kernel meets them.
	Steps []ExplainStep `json:"steps"`
	// Learned are the DNS answers that let Src reach Dst through a
	// ClusterNetworkPolicy domainNames rule and have not expired, one per
	// rule set holding the pair, by set. The steps' lookups of these sets
	// match: Allowed counts them.
	Learned []ExplainLearned `json:"learned,omitempty"`
}

// ExplainLearned is one address a pod learned from a DNS answer (Dst,
// learned by Src): which lookup let it in, and until when.
type ExplainLearned struct {
	// Set is the rule's learned-address set holding the pair, Owner the
	// rule.
	Set   string        `json:"set"`
	Owner *ExplainOwner `json:"owner"`
	// Name is the name the pod asked; Answer the owner name of the
	// address record, at the end of the CNAME chain from Name (Name
	// itself when there is none). Lower case, no trailing dot.
	Name   string `json:"name"`
	Answer string `json:"answer"`
	// Learned is when the answer was learned (the pair's last refresh),
	// Expires when the pair's timeout (the answer's TTL) runs out.
	Learned time.Time `json:"learned"`
	Expires time.Time `json:"expires"`
}

// ExplainStep is one step of an Explanation.
type ExplainStep struct {
	// Chain is the chain of the step (for a jump to a missing chain, that
	// chain).
	Chain string `json:"chain"`
	// Rule is the position of the rule in Chain, from 0; -1 when the step
	// is no rule: a base chain's policy, or an error.
	Rule int `json:"rule"`
	// Owner is what put the rule there; nil for the ruleset's plumbing
	// (conntrack state, the pod maps) and for steps that are no rule.
	Owner *ExplainOwner `json:"owner,omitempty"`
	// Verdict is what the step did with the packet: accept, drop,
	// "jump CHAIN", or continue.
	Verdict string `json:"verdict"`
	// Text is the step for a human: the chain and the rule as nft prints
	// it.
	Text string `json:"text"`
}

// ExplainOwner is what put a rule in the ruleset.
type ExplainOwner struct {
	// Kind is "policy" (a selection chain's jump to one policy's chain),
	// "policy-rule", "isolation" (no policy selecting the pod allowed),
	// "unclassified" (a pod the agent has not classified), "spoof",
	// "node", "self", "masquerade" or "pass" (the Admin tier passed the
	// packet on).
	Kind string `json:"kind"`
	// Tier is "Admin" or "Baseline" for a ClusterNetworkPolicy (policy,
	// policy-rule, pass); empty for a NetworkPolicy.
	Tier string `json:"tier,omitempty"`
	// Namespace and Policy name the NetworkPolicy (policy, policy-rule);
	// a ClusterNetworkPolicy has no namespace.
	Namespace string `json:"namespace,omitempty"`
	Policy    string `json:"policy,omitempty"`
	// Direction is "ingress" or "egress", for the kinds that have one.
	Direction string `json:"direction,omitempty"`
	// Rule is the index of the rule in the policy's spec.ingress or
	// spec.egress (policy-rule only).
	Rule *int `json:"rule,omitempty"`
	// RuleName and Action are a ClusterNetworkPolicy rule's name (when
	// set) and action: Accept, Deny or Pass (policy-rule only).
	RuleName string `json:"ruleName,omitempty"`
	Action   string `json:"action,omitempty"`
	// Text is the owner as the rule's comment says it.
	Text string `json:"text"`
}
