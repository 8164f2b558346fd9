package ruleset

import "net/netip"

// DNSRule is one ClusterNetworkPolicy egress rule with domainNames peers:
// the proxy fills Set4/Set6 with pod . address pairs from the answers to
// the lookups its Pods make of Names.
//
// The sets are Dynamic, keyed by the local pod's address and the learned
// address (`ipv4_addr . ipv4_addr`, `ipv6_addr . ipv6_addr`), with
// element timeouts; the rule's chain accepts `ip saddr . ip daddr @Set4`
// (and its ports), so only the pod that made the lookup gains its answer.
type DNSRule struct {
	Owner      Owner
	Set4, Set6 string
	// Names are lower case, without a trailing dot: "api.example.com",
	// "*.cdn.example.com" (one label or more before the suffix).
	Names []string
	// Pods are the addresses of the local pods the rule's subject
	// selects, both families, sorted.
	Pods []netip.Addr
}
