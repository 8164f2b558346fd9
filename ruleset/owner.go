package ruleset

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

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
	// OwnerIsolation is the drop of an isolated pod's packet after its
	// selection chain returned: no policy selecting the pod for Direction
	// allowed the packet.
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
	// OwnerPass ends the Admin tier of a packet a ClusterNetworkPolicy
	// rule passed (Action Pass) to NetworkPolicy and the Baseline tier.
	OwnerPass
	// OwnerDNSProxy is the steering of a local pod's DNS query to the DNS
	// proxy: the check of the pod's policy of Direction first, when
	// Direction is set; else the delivery to the proxy.
	OwnerDNSProxy
	// OwnerDNSProxyDown is the drop of a DNS query to the proxy when no
	// proxy listens: DNS fails rather than bypass the proxy.
	OwnerDNSProxyDown
)

// Tier is the tier of a ClusterNetworkPolicy, as the API names it; the
// empty Tier is NetworkPolicy's.
type Tier string

// Tiers, in the order a packet meets them: Admin, NetworkPolicy, Baseline.
const (
	TierNetworkPolicy Tier = ""
	TierAdmin         Tier = "Admin"
	TierBaseline      Tier = "Baseline"
)

// String names the kind: "policy", "policy-rule", "isolation", and so on;
// "none" for OwnerNone.
func (k OwnerKind) String() string {
	names := [...]string{"none", "policy", "policy-rule", "isolation", "unclassified", "spoof", "node", "self", "masquerade", "pass",
		"dns-proxy", "dns-proxy-down"}
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
	// Tier is the tier of a ClusterNetworkPolicy (OwnerPolicy,
	// OwnerPolicyRule, OwnerPass); TierNetworkPolicy for a NetworkPolicy.
	Tier Tier
	// Namespace and Policy name the NetworkPolicy (OwnerPolicy,
	// OwnerPolicyRule); a ClusterNetworkPolicy has no Namespace.
	Namespace, Policy string
	// Direction is set for every kind but OwnerSpoof, OwnerSelf,
	// OwnerMasquerade, OwnerDNSProxyDown and OwnerNone (OwnerDNSProxy:
	// see there).
	Direction Direction
	// Rule is the index of the rule in the policy's spec.ingress or
	// spec.egress (OwnerPolicyRule); 0 for the other kinds.
	Rule int
	// RuleName and Action are a ClusterNetworkPolicy rule's name (empty
	// when unset) and action (Accept, Deny, Pass), OwnerPolicyRule only.
	RuleName, Action string
}

// PolicyKey is the policy's namespace/name (OwnerPolicy, OwnerPolicyRule)
// or, for a ClusterNetworkPolicy, its name.
func (o Owner) PolicyKey() string {
	if o.Tier != TierNetworkPolicy {
		return o.Policy
	}
	return o.Namespace + "/" + o.Policy
}

// cluster names a ClusterNetworkPolicy with its tier: "Admin cnp/name".
func (o Owner) cluster() string { return string(o.Tier) + " cnp/" + o.Policy }

// maxComment is the longest comment nft reads back (NFTNL_UDATA_COMMENT_MAXLEN);
// the kernel keeps at most 256 bytes of a rule's user data.
const maxComment = 128

// String is the rule's comment, at most maxComment bytes: "ns/name ingress rule 0" for a policy
// rule, "ns/name" for the jump to a policy's chain, a short description
// for weir's own rules, and nothing for OwnerNone.
func (o Owner) String() string {
	s := o.comment()
	if len(s) <= maxComment {
		return s
	}
	s = s[:maxComment]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func (o Owner) comment() string {
	switch {
	case o.Kind == OwnerPolicy && o.Tier != TierNetworkPolicy:
		return o.cluster()
	case o.Kind == OwnerPolicyRule && o.Tier != TierNetworkPolicy:
		s := o.cluster() + " " + string(o.Direction) + " rule " + strconv.Itoa(o.Rule)
		if o.RuleName != "" {
			s += " '" + commentSafe(o.RuleName) + "'"
		}
		return s + ": " + o.Action
	}
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
	case OwnerPass:
		return string(o.Direction) + " passed by the Admin tier"
	case OwnerDNSProxy:
		if o.Direction != "" {
			return "DNS query to the proxy: " + string(o.Direction) + " policy first"
		}
		return "DNS query to the proxy"
	case OwnerDNSProxyDown:
		return "DNS proxy not listening: query dropped"
	}
	return ""
}

// Counter is a named counter and what it counts for: its name is cut to
// stay short (see policy's counter names), its owner never is.
type Counter struct {
	Name string
	// OwnerRef points to the counter's owner, nil for none (see Owner):
	// usually to the Owner of a rule counting into it. A Counter is two
	// words and a pointer, not 136 bytes: a compiler's lists of thousands
	// of counters are copied whenever a policy's counters come or go.
	OwnerRef *Owner
}

// Owner returns what the counter counts for, the zero Owner when it has
// none.
func (c Counter) Owner() Owner {
	if c.OwnerRef == nil {
		return Owner{}
	}
	return *c.OwnerRef
}

// commentSafe replaces what an nft comment cannot hold (double quotes,
// backslashes, control characters) with '_'.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}
