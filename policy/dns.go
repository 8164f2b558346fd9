package policy

import (
	"encoding/json"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/weir-cni/weir/ruleset"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// This file compiles the domainNames peers of ClusterNetworkPolicy egress
// rules (Accept rules only, as the API says): a pod may reach the
// addresses its own DNS lookups of the names returned, until the answers'
// TTLs run out. The agent's DNS proxy sees every DNS query of the pods
// such a rule holds, forwards it to the resolver it was sent to, and adds
// the answer's addresses to the rule's sets before the pod gets the
// answer. The compiler builds, for each such rule (one whose subject holds
// some local pod):
//
//   - the learned-address sets dns4-H (ipv4_addr . ipv4_addr) and dns6-H,
//     keyed by the pod's address and the learned address, `flags timeout`,
//     `size` DNSSetSize, Dynamic (their elements are the proxy's); H is a
//     hash of the policy's name, the rule's index and the policy's whole
//     spec, so any edit or delete of the policy renames or deletes them
//     and its learned addresses go at once;
//   - in the rule's chain, with the rule's ports, counter and owner, the
//     alternative `ip saddr . ip daddr @dns4-H accept` (and ip6) beside
//     those of its other peers;
//   - a DNSRule in Ruleset.DNS, for the proxy.
//
// And, when there is any, the steering of the DNS queries (UDP and TCP to
// port 53, to any resolver) of the local pods those rules hold (dns-pods4,
// dns-pods6):
//
//	dns-egress   prerouting, priority dstnat + 10 (after kube-proxy's DNAT:
//	             the resolver is the real backend):
//	             iifname "weir*" ct state new udp dport 53 ip saddr @dns-pods4 jump dns-egress-policy
//	             The proxy's query to the resolver comes from the node, so the
//	             pod's own egress policy is checked here, before interception:
//	             dns-egress-policy holds the body of forward-egress
//	             (forwardBody). Its accept ends the base chain, its drop is final.
//	dns-ingress  priority dstnat + 11: the same with the body of
//	             forward-ingress, for a resolver that is a local pod (no
//	             output interface is known yet: the unclassified-ingress
//	             drop never matches there).
//	dns-steer    priority -80 (dstnat + 20):
//	             iifname "weir*" udp dport 53 ip saddr @dns-pods4 meta mark set meta mark | DNSMARK tproxy ip to :PORT accept
//	             then the same match: counter name "dns-proxy-down" drop.
//	             With no proxy listening, tproxy finds no socket and the next
//	             rule drops: DNS fails rather than bypass the proxy.
//
// input-egress then starts with `meta mark & DNSMARK == DNSMARK accept`,
// so that the Admin tier is not run twice on a query steered to the
// proxy. The agent adds the route that delivers the marked packets to the
// node (a fwmark rule and a local route table). Nothing of this exists
// without domainNames rules.

// Defaults of the Snapshot's DNS options.
const (
	// DefaultDNSMark is the packet mark bit of a DNS query steered to the
	// proxy.
	DefaultDNSMark uint32 = 0x00400000
	// DefaultDNSProxyPort is the port the DNS proxy listens on.
	DefaultDNSProxyPort uint16 = 15353
	// DefaultDNSSetSize is the most addresses a domainNames rule learns.
	DefaultDNSSetSize uint32 = 4096
)

// CounterDNSProxyDown counts the DNS queries dropped because no proxy
// listened.
const CounterDNSProxyDown = "dns-proxy-down"

const (
	chainDNSEgress        = "dns-egress"
	chainDNSEgressPolicy  = "dns-egress-policy"
	chainDNSIngress       = "dns-ingress"
	chainDNSIngressPolicy = "dns-ingress-policy"
	chainDNSSteer         = "dns-steer"
	setDNSPods4           = "dns-pods4" // local pods of domainNames rules
	setDNSPods6           = "dns-pods6"
	prefixDNS4            = "dns4-" // dns4-HASH: pod . learned address
	prefixDNS6            = "dns6-"
	dnsPort               = 53
)

// dnsOptions are the Snapshot's DNS options, defaulted.
type dnsOptions struct {
	mark uint32
	port uint16
	size uint32
}

func dnsOptionsOf(s Snapshot) dnsOptions {
	o := dnsOptions{mark: s.DNSMark, port: s.DNSProxyPort, size: s.DNSSetSize}
	if o.mark == 0 {
		o.mark = DefaultDNSMark
	}
	if o.port == 0 {
		o.port = DefaultDNSProxyPort
	}
	if o.size == 0 {
		o.size = DefaultDNSSetSize
	}
	return o
}

// dnsOut is one rule with domainNames peers, as a policy's output holds it.
type dnsOut struct {
	owner      ruleset.Owner
	set4, set6 string
	names      []string
}

// domainNamePattern is the API's validation of a domain name.
var domainNamePattern = regexp.MustCompile(`^(\*\.)?([a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$`)

// domainNames returns the names of peer j of a rule, lower case and
// without a trailing dot; none, reported, for a rule other than Accept. A
// name the API would refuse is reported and left out.
func (c *policyBuilder) domainNames(where string, j int, names []cnp.DomainName, accept bool) []string {
	if !accept {
		c.problem("%s: peer %d: domainNames peers are allowed in Accept rules only (matches nothing)", where, j)
		return nil
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !domainNamePattern.MatchString(string(n)) {
			c.problem("%s: peer %d: domainName %q is not a domain name (ignored)", where, j, n)
			continue
		}
		out = append(out, strings.TrimSuffix(strings.ToLower(string(n)), "."))
	}
	return out
}

// dnsAlternatives adds to alts, the peer alternatives of each family of
// fams, the lookup of the rule's learned-address set, and records the
// rule for Ruleset.DNS.
func (c *policyBuilder) dnsAlternatives(in ruleInput, fams []family, alts [][][]ruleset.Match) {
	if c.specKey == "" {
		b, _ := json.Marshal(&c.ps.cnp.Spec) // plain data: it never fails
		c.specKey = string(b)
	}
	h := ruleset.Hash8(c.ps.cnp.Name + "\x00" + strconv.Itoa(in.owner.Rule) + "\x00" + c.specKey)
	d := dnsOut{owner: in.owner, set4: prefixDNS4 + h, set6: prefixDNS6 + h, names: in.domains}
	c.dns = append(c.dns, d)
	for i, f := range fams {
		set := d.set4
		if f.typ == ruleset.TypeIPv6 {
			set = d.set6
		}
		alts[i] = append(alts[i], []ruleset.Match{{Kind: ruleset.MatchLookup, Fields: []ruleset.Field{f.saddr, f.daddr}, Set: set}})
	}
}

// dnsPart adds the learned-address sets and the steering of the
// domainNames rules of the policies to sets and chains, and returns the
// rules for Ruleset.DNS; it adds nothing when there are none.
func (x *Compiler) dnsPart(sets []ruleset.Set, chains []ruleset.Chain) ([]ruleset.Set, []ruleset.Chain, []ruleset.DNSRule) {
	var rules []ruleset.DNSRule
	pods := map[*podRec]struct{}{}
	for _, ps := range x.cpOrder { // in evaluation order
		for _, d := range ps.out.dns {
			var addrs []netip.Addr
			for _, p := range ps.out.selected[dirIndex(dirEgress)] {
				pods[p] = struct{}{}
				for _, ip := range p.IPs {
					addrs = append(addrs, ip.Unmap())
				}
			}
			slices.SortFunc(addrs, netip.Addr.Compare)
			rules = append(rules, ruleset.DNSRule{Owner: d.owner, Set4: d.set4, Set6: d.set6, Names: d.names, Pods: slices.Compact(addrs)})
			sets = append(sets, x.learnedSets(d)...)
		}
	}
	if len(rules) == 0 {
		return sets, chains, nil
	}
	list := make([]*podRec, 0, len(pods))
	for p := range pods {
		list = append(list, p)
	}
	for _, f := range families {
		sets = append(sets, ruleset.Set{Name: f.dnsPods, Key: []ruleset.Type{f.typ}, Comment: "local pods whose DNS queries go to the proxy",
			Elems: podElems(list, f.typ == ruleset.TypeIPv4)})
	}
	for i := range chains {
		if chains[i].Name == chainInput {
			accept := ruleset.Rule{Matches: []ruleset.Match{{Kind: ruleset.MatchMark, Mark: x.dnsOpt.mark}},
				Verdict: ruleset.Verdict{Kind: ruleset.VerdictAccept}, Owner: ruleset.Owner{Kind: ruleset.OwnerDNSProxy}}
			chains[i].Rules = append([]ruleset.Rule{accept}, chains[i].Rules...)
		}
	}
	return sets, append(chains, x.steeringChains()...), rules
}

// learnedSets are the learned-address sets of one rule.
func (x *Compiler) learnedSets(d dnsOut) []ruleset.Set {
	set := func(name string, t ruleset.Type) ruleset.Set {
		return ruleset.Set{Name: name, Key: []ruleset.Type{t, t}, Timeout: true, Size: x.dnsOpt.size, Dynamic: true,
			Comment: "pod . address learned from its DNS answers"}
	}
	return []ruleset.Set{set(d.set4, ruleset.TypeIPv4), set(d.set6, ruleset.TypeIPv6)}
}

// steeringChains are the chains that check and steer the DNS queries of
// the pods of dns-pods4/6 (see the top of this file).
func (x *Compiler) steeringChains() []ruleset.Chain {
	base := func(name string, offset int) ruleset.Chain {
		return ruleset.Chain{Name: name, Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookPrerouting, Priority: ruleset.PriorityDstNAT + offset}}
	}
	egress, ingress, steer := base(chainDNSEgress, 10), base(chainDNSIngress, 11), base(chainDNSSteer, 20)
	var down []ruleset.Rule
	mark := &ruleset.MarkSet{Mask: x.dnsOpt.mark, Value: x.dnsOpt.mark}
	for _, f := range families {
		for _, proto := range []uint8{ruleset.ProtoUDP, ruleset.ProtoTCP} {
			query := []ruleset.Match{
				{Kind: ruleset.MatchIifname, IfPrefix: x.ifPrefix},
				{Kind: ruleset.MatchPort, Proto: proto, PortFrom: dnsPort, PortTo: dnsPort},
				{Kind: ruleset.MatchLookup, Fields: []ruleset.Field{f.saddr}, Set: f.dnsPods},
			}
			newQuery := slices.Insert(slices.Clone(query), 1, ruleset.Match{Kind: ruleset.MatchCtState, CtStates: ruleset.CtNew})
			check := func(chain string, d direction) ruleset.Rule {
				return ruleset.Rule{Matches: newQuery, Verdict: ruleset.Verdict{Kind: ruleset.VerdictJump, Chain: chain},
					Owner: ruleset.Owner{Kind: ruleset.OwnerDNSProxy, Direction: d.long()}}
			}
			egress.Rules = append(egress.Rules, check(chainDNSEgressPolicy, dirEgress))
			ingress.Rules = append(ingress.Rules, check(chainDNSIngressPolicy, dirIngress))
			steer.Rules = append(steer.Rules, ruleset.Rule{Matches: query, Mark: mark,
				TProxy:  &ruleset.TProxy{IPv6: f.typ == ruleset.TypeIPv6, Port: x.dnsOpt.port},
				Verdict: ruleset.Verdict{Kind: ruleset.VerdictAccept}, Owner: ruleset.Owner{Kind: ruleset.OwnerDNSProxy}})
			down = append(down, ruleset.Rule{Matches: query, Counter: CounterDNSProxyDown,
				Verdict: ruleset.Verdict{Kind: ruleset.VerdictDrop}, Owner: ruleset.Owner{Kind: ruleset.OwnerDNSProxyDown}})
		}
	}
	steer.Rules = append(steer.Rules, down...)
	return []ruleset.Chain{egress, ingress, steer,
		{Name: chainDNSEgressPolicy, Rules: forwardBody(dirEgress, x.ifPrefix)},
		{Name: chainDNSIngressPolicy, Rules: forwardBody(dirIngress, x.ifPrefix)},
	}
}

// dnsCounters are the counters the steering adds, when it does.
func dnsCounters(rules []ruleset.DNSRule) []ruleset.Counter {
	if len(rules) == 0 {
		return nil
	}
	return []ruleset.Counter{{Name: CounterDNSProxyDown, OwnerRef: &ruleset.Owner{Kind: ruleset.OwnerDNSProxyDown}}}
}
