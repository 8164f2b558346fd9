package policy

import (
	"slices"
	"strconv"
	"strings"

	"github.com/weir-cni/weir/ruleset"
)

// Every nftables name weir uses. The table is private to weir: nothing else
// is touched.
//
// Layout (forward hook, every pod packet crosses it because pods sit behind
// routed veths):
//
//	forward-egress  (priority filter)     established/related accept, invalid drop,
//	                                      local pod -> own node accept, pod -> itself accept,
//	                                      ip saddr vmap @egress-pods4 (and ip6),
//	                                      unclassified pod of an egress-isolating
//	                                      namespace drop (unclassified.go)
//	forward-ingress (priority filter + 1) the same for the destination:
//	                                      ip daddr vmap @ingress-pods4 (and ip6),
//	                                      unclassified pod ... drop
//
// Before those, prerouting-spoof (priority raw) drops packets from a pod
// interface whose source address is not that pod's (spoof.go), and, with
// ClusterNetworkPolicy domainNames rules, dns-egress, dns-ingress and
// dns-steer (after DNAT) check the DNS queries of those rules' pods and
// hand them to the DNS proxy (dns.go).
//
// An accept in forward-egress only ends that base chain: the packet then meets
// forward-ingress, so the source's egress AND the destination's ingress must
// both allow, with no marks. A drop is final.
//
// The pod maps send an isolated local pod to the chain of its *selection*: the
// sorted set of policies of its namespace that select it for that direction
// (sel-in-HASH-ns), or straight to the chain of its policy when a single
// policy selects it (and denied packets are not logged). A selection chain
// jumps to each policy's chain (pol-in-HASH-ns/name); a policy chain
// accepts on a match and falls through otherwise; the base chain drops what
// returns (isolationRule). A rule's few numeric ports (up to maxInlinePorts ranges) are
// inline matches (`tcp dport 80`).
//
// Peers and ports live in seven shared sets, whatever the number of
// policies: peers4/6 (exact pod addresses of the union of a rule's
// selector peers), blocks4/6 (the union of its ipBlock ranges, excepts
// subtracted; interval), named4/6 (destination address . protocol . port
// of named ports) and ports (protocol . port range of a rule with more
// numeric ports than maxInlinePorts; interval). A rule is thus one nft
// rule per peer kind and family, whatever its peers and ports: a policy's
// rules and elements grow as its peers + ports, never as their product.
// Each shared set is split by id into shards (groups.go: setShards). Each set is keyed by a rule id
// first: a rule loads its id as a constant (`numgen random mod 1 offset ID`,
// the only constant nft both prints and parses inside a concatenation) and
// looks up `ID . ip saddr`. The id names a *definition* — a union of
// selector peers, one union of ipBlocks, one named-port resolution, one
// list of ports — so rules with equal definitions share their elements, and it is a hash of
// the definition, so it stays stable across syncs and restarts. Why: the
// kernel finds a set by name with a linear walk of the table's sets (set
// creation, every rule referencing a set and every element message pay
// it), so n sets cost O(n²) per batch — 5,000 per-rule sets took 5 s of
// kernel time to load; seven shared sets take none of that.
//
// So a packet costs a bounded number of hash lookups (the ipBlock set is a
// pipapo set, whose lookup grows slowly with its ranges) whatever the
// policy count (only the policies selecting its pods are walked). Each
// shared-set lookup first loads its id by `numgen random mod 1 offset ID`,
// which costs one get_random_u32 (mod 1 makes it 0): an immediate would
// spare that draw, but nft would list it in a form `nft -f` cannot load
// back, and `nft list` output must reload. Pod churn changes elements (and
// at most creates or deletes a small selection chain, or the chains of a
// policy that gains or loses its last local pod), and a policy change
// rewrites only its own chains and its definitions' elements.
const (
	chainEgress    = "forward-egress"  // base chain: source pod's egress
	chainIngress   = "forward-ingress" // base chain: destination pod's ingress
	chainMasq      = "postrouting-masq"
	chainSpoof     = "prerouting-spoof" // base chain: drops spoofed pod sources (spoof.go)
	chainSpoofDrop = "spoof-drop"       // the spoof check's exemptions, then its drop
	chainInput     = "input-egress"     // base chain: local pods to their node, Admin tier (cluster.go)

	setNodeAddrs4 = "node-addrs4" // the node's own addresses
	setNodeAddrs6 = "node-addrs6"
	setSelf4      = "self4" // ip saddr . ip daddr of every local pod to itself
	setSelf6      = "self6"
	mapEgress4    = "egress-pods4" // local pod IP : jump sel-eg-...
	mapEgress6    = "egress-pods6"
	mapIngress4   = "ingress-pods4" // local pod IP : jump sel-in-...
	mapIngress6   = "ingress-pods6"
	// The keys of the pod maps, which the isolation drops look up: a
	// lookup in a verdict map would have the kernel validate the chains
	// its elements jump to once more on every commit that validates.
	setEgressIsolated4  = "egress-isolated4"
	setEgressIsolated6  = "egress-isolated6"
	setIngressIsolated4 = "ingress-isolated4"
	setIngressIsolated6 = "ingress-isolated6"
	// The tiers' pod maps: local pod IP : jump adm-eg-... (cluster.go).
	mapAdminEgress4    = "admin-egress-pods4"
	mapAdminEgress6    = "admin-egress-pods6"
	mapAdminIngress4   = "admin-ingress-pods4"
	mapAdminIngress6   = "admin-ingress-pods6"
	mapBaselineEgress4 = "baseline-egress-pods4"
	mapBaselineEgress6 = "baseline-egress-pods6"
	// The Baseline tier's egress maps for the input hook: only the pods
	// no NetworkPolicy isolates for egress (one that does allows the node).
	mapBaselineNodeEgress4 = "baseline-node-egress-pods4"
	mapBaselineNodeEgress6 = "baseline-node-egress-pods6"
	mapBaselineIngress4    = "baseline-ingress-pods4"
	mapBaselineIngress6    = "baseline-ingress-pods6"
	setPodCIDRs4           = "pod-cidrs4" // this node's pod CIDRs
	setPodCIDRs6           = "pod-cidrs6"
	setCluster4            = "cluster-cidrs4" // every pod CIDR of the cluster
	setCluster6            = "cluster-cidrs6"
	setPeers4              = "peers4" // id . pod address of selector peers
	setPeers6              = "peers6"
	setBlocks4             = "blocks4" // id . address range of ipBlock peers
	setBlocks6             = "blocks6"
	setNamed4              = "named4" // id . destination address . protocol . port
	setNamed6              = "named6"
	setPorts               = "ports"     // id . protocol . port range of rules with many ports
	setUnrouted4           = "unrouted4" // sources the anti-spoofing check lets pass
	setUnrouted6           = "unrouted6"
	setLocalPods4          = "local-pods4" // addresses of the local pods the agent classified
	setLocalPods6          = "local-pods6"
	setGroupsIn            = "ingress-groups" // link groups of namespaces with an ingress policy
	setGroupsEg            = "egress-groups"  // link groups of namespaces with an egress policy

	counterDeniedIn = "denied-ingress" // packets isolation dropped
	counterDeniedEg = "denied-egress"
	// CounterSpoofed counts the packets dropped for a source address their
	// pod interface does not own (see spoof.go).
	CounterSpoofed = "spoofed"
	// CounterUnclassifiedIngress and CounterUnclassifiedEgress count the
	// packets to and from pods the agent has not classified that their
	// namespace's isolating policies dropped (see unclassified.go).
	CounterUnclassifiedIngress = "unclassified-ingress"
	CounterUnclassifiedEgress  = "unclassified-egress"

	// DefaultPodInterfacePrefix starts the name of every pod's host-side
	// veth unless the network config sets hostInterfacePrefix; it is
	// conf.DefaultHostPrefix.
	DefaultPodInterfacePrefix = "weir"

	// DeniedPrefix starts the NFLOG prefix of a dropped packet; the
	// selection chain's name follows.
	DeniedPrefix = "weir-deny "
	maxLogPrefix = 127 // the kernel's NF_LOG_PREFIXLEN, less the NUL

	prefixPolicy    = "pol-" // pol-in-HASH-ns/name
	prefixSelection = "sel-" // sel-in-HASH-ns
	prefixCluster   = "cnp-" // cnp-adm-in-HASH-name

	// maxReadable bounds the readable namespace/name part of a name so that
	// every name stays under the kernel's 256-byte limit.
	maxReadable = 160
)

// forwardChains are the forward base chains, for pod interfaces named
// prefix*.
func forwardChains(prefix string) []ruleset.Chain {
	return []ruleset.Chain{
		forwardChain(chainEgress, dirEgress, ruleset.PriorityFilter, prefix),
		forwardChain(chainIngress, dirIngress, ruleset.PriorityFilter+1, prefix),
	}
}

// forwardChain is the forward base chain of direction d: established and
// related packets pass, invalid ones drop, then its body (forwardBody).
func forwardChain(name string, d direction, priority int, prefix string) ruleset.Chain {
	conntrack := []ruleset.Rule{
		ctRule(ruleset.CtEstablished|ruleset.CtRelated, ruleset.VerdictAccept),
		ctRule(ruleset.CtInvalid, ruleset.VerdictDrop),
	}
	return ruleset.Chain{
		Name:  name,
		Base:  &ruleset.Base{Type: "filter", Hook: ruleset.HookForward, Priority: priority},
		Rules: slices.Concat(conntrack, forwardBody(d, prefix)),
	}
}

// forwardBody is the policy check of a new packet for direction d, for
// pod interfaces named prefix*: a pod may always talk to itself, the
// Admin tier's pod map of each family sends the pod on to its Admin
// selection (cluster.go), the pod the check is about may talk to its own
// node, NetworkPolicy's pod map of each family sends it on to its
// selection chain, which returns to the isolation drop (isolationRule),
// the default verdict of unclassified pods
// (unclassified.go), then the Baseline tier's pod maps. Each step comes
// for both families before the next. The forward chains and the check of
// DNS queries before the proxy (dns.go) hold it.
func forwardBody(d direction, prefix string) []ruleset.Rule {
	var self, admin, node, dispatch, isolated []ruleset.Rule
	for _, f := range families {
		pod, other := f.ends(d)
		self = append(self, lookupRule(ownerSelf, f.self, f.saddr, f.daddr))
		admin = append(admin, vmapRule(f.tierMap(ruleset.TierAdmin, d), pod))
		node = append(node, lookupRule(ownerNode(d.long()), f.nodeAddrs, other))
		dispatch = append(dispatch, vmapRule(f.podMap(d), pod))
		isolated = append(isolated, isolationRule(f.isolated(d), d, pod))
	}
	return slices.Concat(self, admin, node, dispatch, isolated, unclassifiedRules(prefix, d), baselineRules(d))
}

// isolationRule drops the packets of the isolated local pods (set, the
// keys of a pod map, looked up by field pod) that no policy of theirs
// accepted:
// the chain a pod's map element jumps to (its selection chain, or the
// chain of its only policy) returns here when none does. Dropping once
// here, not at the end of every selection chain, spares the kernel a rule
// per selection and lets a pod selected by one policy jump straight to
// that policy's chain.
func isolationRule(set string, d direction, pod ruleset.Field) ruleset.Rule {
	counter := counterDeniedIn
	if d == dirEgress {
		counter = counterDeniedEg
	}
	return ruleset.Rule{
		Matches: []ruleset.Match{{Kind: ruleset.MatchLookup, Fields: []ruleset.Field{pod}, Set: set}},
		Counter: counter,
		Verdict: ruleset.Verdict{Kind: ruleset.VerdictDrop},
		Owner:   ownerIsolation(d),
	}
}

// skeletonSets are the fixed sets and maps; Compile fills their elements.
var skeletonSets = []ruleset.Set{
	{Name: setNodeAddrs4, Key: []ruleset.Type{ruleset.TypeIPv4}, Comment: "addresses of this node"},
	{Name: setNodeAddrs6, Key: []ruleset.Type{ruleset.TypeIPv6}, Comment: "addresses of this node"},
	{Name: setSelf4, Key: []ruleset.Type{ruleset.TypeIPv4, ruleset.TypeIPv4}, Comment: "local pod to itself"},
	{Name: setSelf6, Key: []ruleset.Type{ruleset.TypeIPv6, ruleset.TypeIPv6}, Comment: "local pod to itself"},
	{Name: mapEgress4, Key: []ruleset.Type{ruleset.TypeIPv4}, Map: true, Comment: "egress-isolated local pods"},
	{Name: mapEgress6, Key: []ruleset.Type{ruleset.TypeIPv6}, Map: true, Comment: "egress-isolated local pods"},
	{Name: mapIngress4, Key: []ruleset.Type{ruleset.TypeIPv4}, Map: true, Comment: "ingress-isolated local pods"},
	{Name: mapIngress6, Key: []ruleset.Type{ruleset.TypeIPv6}, Map: true, Comment: "ingress-isolated local pods"},
	{Name: setEgressIsolated4, Key: []ruleset.Type{ruleset.TypeIPv4}, Comment: "egress-isolated local pods"},
	{Name: setEgressIsolated6, Key: []ruleset.Type{ruleset.TypeIPv6}, Comment: "egress-isolated local pods"},
	{Name: setIngressIsolated4, Key: []ruleset.Type{ruleset.TypeIPv4}, Comment: "ingress-isolated local pods"},
	{Name: setIngressIsolated6, Key: []ruleset.Type{ruleset.TypeIPv6}, Comment: "ingress-isolated local pods"},
	{Name: mapAdminEgress4, Key: []ruleset.Type{ruleset.TypeIPv4}, Map: true, Comment: "local pods of Admin tier egress rules"},
	{Name: mapAdminEgress6, Key: []ruleset.Type{ruleset.TypeIPv6}, Map: true, Comment: "local pods of Admin tier egress rules"},
	{Name: mapAdminIngress4, Key: []ruleset.Type{ruleset.TypeIPv4}, Map: true, Comment: "local pods of Admin tier ingress rules"},
	{Name: mapAdminIngress6, Key: []ruleset.Type{ruleset.TypeIPv6}, Map: true, Comment: "local pods of Admin tier ingress rules"},
	{Name: mapBaselineEgress4, Key: []ruleset.Type{ruleset.TypeIPv4}, Map: true, Comment: "local pods of Baseline tier egress rules"},
	{Name: mapBaselineEgress6, Key: []ruleset.Type{ruleset.TypeIPv6}, Map: true, Comment: "local pods of Baseline tier egress rules"},
	{Name: mapBaselineNodeEgress4, Key: []ruleset.Type{ruleset.TypeIPv4}, Map: true, Comment: "local pods of Baseline tier egress rules, to their node"},
	{Name: mapBaselineNodeEgress6, Key: []ruleset.Type{ruleset.TypeIPv6}, Map: true, Comment: "local pods of Baseline tier egress rules, to their node"},
	{Name: mapBaselineIngress4, Key: []ruleset.Type{ruleset.TypeIPv4}, Map: true, Comment: "local pods of Baseline tier ingress rules"},
	{Name: mapBaselineIngress6, Key: []ruleset.Type{ruleset.TypeIPv6}, Map: true, Comment: "local pods of Baseline tier ingress rules"},
	{Name: setPeers4, Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv4}, Comment: "selector peers by rule id"},
	{Name: setPeers6, Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv6}, Comment: "selector peers by rule id"},
	{Name: setBlocks4, Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv4}, Interval: true, Comment: "ipBlock peers by rule id"},
	{Name: setBlocks6, Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv6}, Interval: true, Comment: "ipBlock peers by rule id"},
	{Name: setNamed4, Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv4, ruleset.TypeProto, ruleset.TypePort}, Comment: "named ports by rule id"},
	{Name: setNamed6, Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv6, ruleset.TypeProto, ruleset.TypePort}, Comment: "named ports by rule id"},
	{Name: setPorts, Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeProto, ruleset.TypePort}, Interval: true, Comment: "numeric ports by rule id"},
	{Name: setLocalPods4, Key: []ruleset.Type{ruleset.TypeIPv4}, Comment: "local pods the agent classified"},
	{Name: setLocalPods6, Key: []ruleset.Type{ruleset.TypeIPv6}, Comment: "local pods the agent classified"},
	{Name: setGroupsIn, Key: []ruleset.Type{ruleset.TypeGroup}, Comment: "link groups of namespaces with an ingress policy"},
	{Name: setGroupsEg, Key: []ruleset.Type{ruleset.TypeGroup}, Comment: "link groups of namespaces with an egress policy"},
}

func ctRule(states uint32, v ruleset.VerdictKind) ruleset.Rule {
	return ruleset.Rule{Matches: []ruleset.Match{{Kind: ruleset.MatchCtState, CtStates: states}}, Verdict: ruleset.Verdict{Kind: v}}
}

// lookupRule accepts the packets whose fields are in set.
func lookupRule(owner ruleset.Owner, set string, fields ...ruleset.Field) ruleset.Rule {
	return ruleset.Rule{
		Matches: []ruleset.Match{{Kind: ruleset.MatchLookup, Fields: fields, Set: set}},
		Verdict: ruleset.Verdict{Kind: ruleset.VerdictAccept},
		Owner:   owner,
	}
}

// The owners of weir's own rules, and so of their counters.
var ownerSelf = ruleset.Owner{Kind: ruleset.OwnerSelf}

func ownerNode(d ruleset.Direction) ruleset.Owner {
	return ruleset.Owner{Kind: ruleset.OwnerNode, Direction: d}
}

func ownerIsolation(d direction) ruleset.Owner {
	return ruleset.Owner{Kind: ruleset.OwnerIsolation, Direction: d.long()}
}

func ownerUnclassified(d direction) ruleset.Owner {
	return ruleset.Owner{Kind: ruleset.OwnerUnclassified, Direction: d.long()}
}

// fixedCounters are the counters of weir's own drops, sorted by name.
var fixedCounters = []ruleset.Counter{
	{Name: counterDeniedEg, OwnerRef: new(ownerIsolation(dirEgress))},
	{Name: counterDeniedIn, OwnerRef: new(ownerIsolation(dirIngress))},
	{Name: CounterSpoofed, OwnerRef: &ruleset.Owner{Kind: ruleset.OwnerSpoof}},
	{Name: CounterUnclassifiedEgress, OwnerRef: new(ownerUnclassified(dirEgress))},
	{Name: CounterUnclassifiedIngress, OwnerRef: new(ownerUnclassified(dirIngress))},
}

func vmapRule(m string, fields ...ruleset.Field) ruleset.Rule {
	return ruleset.Rule{Verdict: ruleset.Verdict{Kind: ruleset.VerdictVMap, Map: m, Fields: fields}}
}

// direction is "in" (ingress) or "eg" (egress) in names.
type direction string

const (
	dirIngress direction = "in"
	dirEgress  direction = "eg"
)

func (d direction) long() ruleset.Direction {
	if d == dirIngress {
		return ruleset.Ingress
	}
	return ruleset.Egress
}

func readable(s string) string {
	if len(s) > maxReadable {
		return s[:maxReadable]
	}
	return s
}

// policyChainName names the chain of one policy and direction:
// pol-in-HASH-ns/name.
func policyChainName(d direction, key string) string {
	return policyChainNameHash(d, ruleset.Hash8(key), key)
}

// policyChainNameHash is policyChainName with ruleset.Hash8(key) already
// computed.
func policyChainNameHash(d direction, hash, key string) string {
	return prefixPolicy + string(d) + "-" + hash + "-" + readable(key)
}

// policyCounterName names the counter of one rule of one policy:
// pol-in-HASH-rN-ns/name.
func policyCounterName(d direction, hash, key string, rule int) string {
	return prefixPolicy + string(d) + "-" + hash + "-r" + strconv.Itoa(rule) + "-" + readable(key)
}

// selectionChainName names the chain of a set of policies (all of one
// namespace) that together select some pods: sel-in-HASH-ns.
func selectionChainName(d direction, ns string, policies []string) string {
	return prefixSelection + string(d) + "-" + ruleset.Hash8(strings.Join(policies, ",")) + "-" + readable(ns)
}
