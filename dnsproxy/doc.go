// Package dnsproxy is the agent's transparent DNS proxy for the
// domainNames egress peers of ClusterNetworkPolicy: the node's nftables
// table steers the DNS queries (UDP and TCP, port 53) of the pods some
// domainNames rule selects to it (tproxy); it forwards each query to the
// resolver the pod addressed, and before releasing an answer to a name a
// rule allows for that pod it learns the answer's A and AAAA addresses
// into the rule's kernel sets (pod . address, with the answer's TTL as
// timeout) through a Learner. So the pod's first connection after the
// lookup is already allowed, and an address no answer gave stays denied.
// A pod learns the addresses of the family it asked from (its IPv4 address
// the A records, its IPv6 address the AAAA records): a rule's pods are
// addresses, and which addresses are one pod's it does not say.
//
// Layer: it imports package ruleset (for rule owners) and
// github.com/miekg/dns for every DNS message; it knows no dataplane. The
// nftables backend implements Learner over netlink, and the agent
// (controller) runs the Proxy and hands it the ruleset's rules after every
// sync (SetRules); when they changed it holds the answers while it applies
// the ruleset (Hold, Release), so that none is released learned under
// rules the kernel no longer has. It also keeps an index of what it
// learned, for weirctl explain (Explain) and its metrics.
package dnsproxy
