package ruleset

import "strconv"

// Direction is the direction of traffic a rule polices, named as
// NetworkPolicy names it.
type Direction string

// Directions.
const (
	Ingress Direction = "ingress"
	Egress  Direction = "egress"
)

// OwnerKind says what put a rule, or a counter, in the ruleset.
type OwnerKind int

// Owner kinds.
const (
	// OwnerNone is the ruleset's plumbing (the conntrack state rules, the
	// dispatch through the pod maps): it needs no comment.
	OwnerNone OwnerKind = iota
	// OwnerPolicy is a selection chain's jump to the chain of one policy
	// (Namespace, Policy) for Direction.
	OwnerPolicy
	// OwnerPolicyRule is one rule of a policy: number Rule of its
	// spec.ingress or spec.egress (Direction).
	OwnerPolicyRule
	// OwnerIsolation is the drop that ends a selection chain: no policy
	// selecting the pod for Direction allowed the packet.
	OwnerIsolation
	// OwnerUnclassified is the drop of the packets of pods the agent has
	// not classified, in namespaces with a policy of Direction.
	OwnerUnclassified
	// OwnerSpoof is the drop of the packets a pod sends from an address
	// not routed back through its interface.
	OwnerSpoof
	// OwnerNode is the accept of a local pod's packets to its node
	// (Egress), or of its node's to it (Ingress).
	OwnerNode
	// OwnerSelf is the accept of a pod's packets to itself.
	OwnerSelf
	// OwnerMasquerade is the masquerading of pods' packets leaving the
	// cluster.
	OwnerMasquerade
)

// String names the kind: "policy", "policy-rule", "isolation", and so on;
// "none" for OwnerNone.
func (k OwnerKind) String() string {
	names := [...]string{"none", "policy", "policy-rule", "isolation", "unclassified", "spoof", "node", "self", "masquerade"}
	if k < 0 || int(k) >= len(names) {
		return "kind " + strconv.Itoa(int(k))
	}
	return names[k]
}

// Owner says what put a rule in the ruleset: a rule of a NetworkPolicy, or
// one of weir's own. It is data: the rule's comment is rendered from it
// (String), and the metrics, the denied-packet log and explain read its
// fields. The zero Owner is OwnerNone.
type Owner struct {
	Kind OwnerKind
	// Namespace and Policy name the NetworkPolicy (OwnerPolicy,
	// OwnerPolicyRule).
	Namespace, Policy string
	// Direction is set for every kind but OwnerSpoof, OwnerSelf,
	// OwnerMasquerade and OwnerNone.
	Direction Direction
	// Rule is the index of the rule in the policy's spec.ingress or
	// spec.egress (OwnerPolicyRule); 0 for the other kinds.
	Rule int
}

// PolicyKey is the policy's namespace/name (OwnerPolicy, OwnerPolicyRule).
func (o Owner) PolicyKey() string { return o.Namespace + "/" + o.Policy }

// String is the rule's comment: "ns/name ingress rule 0" for a policy
// rule, "ns/name" for the jump to a policy's chain, a short description
// for weir's own rules, and nothing for OwnerNone.
func (o Owner) String() string {
	switch o.Kind {
	case OwnerPolicy:
		return o.PolicyKey()
	case OwnerPolicyRule:
		return o.PolicyKey() + " " + string(o.Direction) + " rule " + strconv.Itoa(o.Rule)
	case OwnerIsolation:
		return string(o.Direction) + " isolated: no policy allows"
	case OwnerUnclassified:
		return "unclassified pod, " + string(o.Direction) + " policy in its namespace"
	case OwnerSpoof:
		return "source not routed back through its pod interface"
	case OwnerNode:
		if o.Direction == Ingress {
			return "node to its local pod"
		}
		return "local pod to its node"
	case OwnerSelf:
		return "pod to itself"
	case OwnerMasquerade:
		return "pods to outside the cluster"
	}
	return ""
}

// Counter is a named counter and what it counts for: its name is cut to
// stay short (see policy's counter names), its owner never is.
type Counter struct {
	Name  string
	Owner Owner
}
