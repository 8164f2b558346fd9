package policy

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/weir-cni/weir/ruleset"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// This file compiles ClusterNetworkPolicy (policy.networking.k8s.io
// v1beta1), the cluster administrator's tiers around NetworkPolicy. For a
// packet, per direction, the API's order is:
//
//	Admin tier     policies by priority (lowest number first, then name),
//	               rules in order: Accept allows and stops, Deny drops
//	               and stops, Pass skips the rest of the Admin tier;
//	NetworkPolicy  as today: a pod it selects is allowed what it allows,
//	               and nothing else;
//	Baseline tier  the same order, for pods no NetworkPolicy selects for
//	               that direction: Accept, Deny; Pass leaves the packet to
//	               the default;
//	default        allow.
//
// The ruleset keeps that order in its base chains: after the accepts of a
// pod's packets to itself (never subject to the API), the Admin tier's pod
// maps (admin-egress-pods4 and so on) send a local pod to the chain of its
// Admin selection — the policies whose subject holds it, in order — which
// jumps to each policy's chain (cnp-adm-eg-HASH-name); then NetworkPolicy's
// pod maps; then, for the pods they did not send anywhere (their chains end
// in drop), the Baseline tier's maps. A policy's chain holds its rules,
// each with its verdict: accept, drop, or for Pass in the Admin tier a mark
// (TierPassMark) and return, after which the selection chain clears the
// mark and returns, skipping the tier's later policies. A Baseline Pass is
// an accept: nothing after the Baseline tier but the default allow.
//
// Peers and ports are NetworkPolicy's in another form, and are compiled by
// the same code into the same shared sets: a namespaces peer is a
// namespaceSelector peer, a pods peer a namespaceSelector and podSelector
// peer, networks are ipBlocks without excepts, nodes are the addresses of
// the nodes their selector matches, and a named port is resolved against
// the destination pods' containerPorts of any protocol. So per-packet cost
// grows with the policies that select the packet's pod, never with the
// number of policies.
//
// Egress to the node's own addresses leaves the forward hook: the
// input-egress chain (input hook) takes the pods' packets to their node
// through the Admin tier, then accepts them, as NetworkPolicy does.

// DefaultTierPassMark is the packet mark bit of an Admin tier Pass, set by
// the Pass rule and cleared at once by the selection chain; no packet
// leaves weir's chains with it set.
const DefaultTierPassMark uint32 = 0x00800000

// clusterKeyPrefix starts the key of a ClusterNetworkPolicy's state, which
// no NetworkPolicy key (namespace/name) can start with.
const clusterKeyPrefix = "/"

// tierShort names a tier in chain and counter names.
func tierShort(t ruleset.Tier) string {
	if t == ruleset.TierAdmin {
		return "adm"
	}
	return "bl"
}

// clusterChainName names the chain of one ClusterNetworkPolicy and
// direction: cnp-adm-eg-HASH-name.
func clusterChainName(t ruleset.Tier, d direction, hash, name string) string {
	return prefixCluster + tierShort(t) + "-" + string(d) + "-" + hash + "-" + readable(name)
}

// clusterCounterName names the counter of one rule:
// cnp-adm-eg-HASH-rN-name.
func clusterCounterName(t ruleset.Tier, d direction, hash, name string, rule int) string {
	return prefixCluster + tierShort(t) + "-" + string(d) + "-" + hash + "-r" + fmt.Sprint(rule) + "-" + readable(name)
}

// tierSelectionChainName names the chain of the policies of one tier that
// together select some pods: adm-eg-HASH.
func tierSelectionChainName(t ruleset.Tier, d direction, names []string) string {
	return tierShort(t) + "-" + string(d) + "-" + ruleset.Hash8(strings.Join(names, ","))
}

// ClusterPolicyProblems returns the problems of each ClusterNetworkPolicy
// of the last Compile, by name; a policy without problems is absent.
func (x *Compiler) ClusterPolicyProblems() map[string][]string {
	out := map[string][]string{}
	for _, ps := range x.cpOrder {
		if len(ps.out.problems) > 0 {
			out[ps.cnp.Name] = ps.out.problems
		}
	}
	return out
}

// syncClusterPolicies records which ClusterNetworkPolicies are new,
// changed or gone, and keeps them in evaluation order.
func (x *Compiler) syncClusterPolicies(list []*cnp.ClusterNetworkPolicy) {
	seen, changed := 0, false
	for _, p := range list {
		if p == nil {
			continue
		}
		ps, created, unchanged := visit(x, x.cpolicies, p.Name, func() string { return clusterKeyPrefix + p.Name },
			func(ps *policyState) bool { return sameClusterPolicy(ps.cnp, p) }, &seen)
		changed = changed || created
		if unchanged {
			continue
		}
		if ps.cnp == nil || ps.cnp.Spec.Tier != p.Spec.Tier || ps.cnp.Spec.Priority != p.Spec.Priority {
			changed = true // the order changes
		}
		ps.gen, ps.cnp = x.gen, p
		x.dirty[ps] = struct{}{}
	}
	if seen < len(x.cpolicies) && sweepPolicies(x, x.cpolicies) {
		changed = true
	}
	if changed {
		x.polStale = true
		x.cpOrder = x.cpOrder[:0]
		for _, ps := range x.cpolicies {
			x.cpOrder = append(x.cpOrder, ps)
		}
		sort.Slice(x.cpOrder, func(i, j int) bool { return clusterBefore(x.cpOrder[i].cnp, x.cpOrder[j].cnp) })
	}
}

// clusterBefore orders policies as a packet meets them: the Admin tier,
// then the Baseline tier, each by priority, then by name (the API leaves
// the order of equal priorities to the implementation; weir's is stable).
func clusterBefore(a, b *cnp.ClusterNetworkPolicy) bool {
	if ta, tb := a.Spec.Tier == cnp.AdminTier, b.Spec.Tier == cnp.AdminTier; ta != tb {
		return ta
	}
	if a.Spec.Priority != b.Spec.Priority {
		return a.Spec.Priority < b.Spec.Priority
	}
	return a.Name < b.Name
}

// sameClusterPolicy tells whether b compiles like a.
func sameClusterPolicy(a, b *cnp.ClusterNetworkPolicy) bool {
	if a == b {
		return true
	}
	if a.ResourceVersion != "" && a.UID != "" && a.ResourceVersion == b.ResourceVersion && a.UID == b.UID {
		return true
	}
	return reflect.DeepEqual(a.Spec, b.Spec)
}

// syncNodes records the cluster's nodes; the policies with nodes peers
// are compiled again when they change.
func (x *Compiler) syncNodes(nodes []PeerNode) {
	sorted := slices.Clone(nodes)
	slices.SortStableFunc(sorted, func(a, b PeerNode) int { return strings.Compare(a.Name, b.Name) })
	if reflect.DeepEqual(sorted, x.nodes) {
		return
	}
	x.nodes = sorted
	x.markUsers(x.nodeUsers)
}

// tier is the policy's tier as the ruleset names it; "" when the API's
// value is unknown.
func clusterTier(p *cnp.ClusterNetworkPolicy) ruleset.Tier {
	switch p.Spec.Tier {
	case cnp.AdminTier:
		return ruleset.TierAdmin
	case cnp.BaselineTier:
		return ruleset.TierBaseline
	}
	return ""
}

// compileClusterPolicy builds the chains and groups of one
// ClusterNetworkPolicy and records the local pods its subject holds, for
// the directions it has rules for (a policy without ingress rules does not
// touch ingress). A policy whose tier or subject cannot be read is
// reported and not applied; a rule that cannot be read is reported and
// fails closed: an Accept rule allows nothing, a Deny or Pass rule acts
// on every peer and port.
func (c *policyBuilder) compileClusterPolicy(p *cnp.ClusterNetworkPolicy) {
	tier := clusterTier(p)
	where := "ClusterNetworkPolicy " + p.Name
	if tier == "" {
		c.problem("%s: unknown tier %q (not applied)", where, p.Spec.Tier)
		c.dry = true
		return
	}
	selected, def, err := c.clusterSubject(p.Spec.Subject)
	if err != nil {
		c.problem("%s: subject: %v (not applied)", where, err)
		c.dry = true
		return
	}
	c.dry = len(selected) == 0
	tooBig := clusterItems(&p.Spec) > MaxPolicyItems
	if tooBig {
		c.problem("%s: more than %d rules, peers, networks and ports, the most weir gives one policy (only its first Deny or Pass "+
			"rule of each direction is applied, to every peer and port)", where, MaxPolicyItems)
	}
	for _, d := range []direction{dirIngress, dirEgress} {
		n := len(p.Spec.Ingress)
		if d == dirEgress {
			n = len(p.Spec.Egress)
		}
		if n == 0 {
			continue
		}
		chain := ruleset.Chain{Name: clusterChainName(tier, d, c.ps.hash, p.Name)}
		if !tooBig {
			for i := 0; i < n; i++ {
				in, ok := c.clusterRule(p, tier, d, i)
				if !ok {
					continue
				}
				in.selected, in.localDef = selected, def
				if in.mark != nil {
					c.pass[dirIndex(d)] = true
				}
				chain.Rules = c.compileRule(chain.Rules, in)
			}
		}
		c.addChain(chain)
		c.selected[dirIndex(d)] = selected
	}
	if c.over {
		c.problem("%s: its rules need more than %d set elements, the most weir gives one policy (only its first Deny or Pass "+
			"rule of each direction is applied, to every peer and port)", where, elementCap)
	}
	if tooBig || c.over {
		c.failClosedPolicy(p, tier, selected, def)
	}
}

// failClosedPolicy replaces what a ClusterNetworkPolicy too big to compile
// built by what it fails closed to, never a part of it: its Accept rules
// allow nothing and its first Deny or Pass rule of each direction acts on
// every peer and port (the rules after it are never reached).
func (c *policyBuilder) failClosedPolicy(p *cnp.ClusterNetworkPolicy, tier ruleset.Tier, selected []*podRec, def string) {
	c.groups.reset()
	c.over, c.dns = false, nil
	for _, d := range []direction{dirIngress, dirEgress} {
		ch := c.chains[clusterChainName(tier, d, c.ps.hash, p.Name)]
		if ch == nil {
			continue
		}
		ch.Rules = nil
		c.pass[dirIndex(d)] = false
		n := len(p.Spec.Ingress)
		if d == dirEgress {
			n = len(p.Spec.Egress)
		}
		for i := 0; i < n; i++ {
			in, ok := c.clusterAction(p, tier, d, i)
			if !ok || !in.failClosed {
				continue
			}
			in.selected, in.localDef = selected, def
			if in.mark != nil {
				c.pass[dirIndex(d)] = true
			}
			ch.Rules = c.compileRule(nil, in)
			break
		}
	}
}

// actionOf is the action of rule i of p for direction d.
func actionOf(p *cnp.ClusterNetworkPolicy, d direction, i int) cnp.ClusterNetworkPolicyRuleAction {
	if d == dirIngress {
		return p.Spec.Ingress[i].Action
	}
	return p.Spec.Egress[i].Action
}

// clusterItems counts the rules, peers, networks, domain names and ports
// of a ClusterNetworkPolicy spec, as policyItems does for NetworkPolicy.
func clusterItems(s *cnp.ClusterNetworkPolicySpec) int {
	n := 0
	for _, r := range s.Ingress {
		n += 1 + len(r.From) + len(r.Protocols)
	}
	for _, r := range s.Egress {
		n += 1 + len(r.Protocols)
		for _, t := range r.To {
			n += 1 + len(t.Networks) + len(t.DomainNames)
		}
	}
	return n
}

func dirIndex(d direction) int {
	if d == dirIngress {
		return 0
	}
	return 1
}

// clusterSubject returns the local pods a subject holds and the
// definition of that selection.
func (c *policyBuilder) clusterSubject(s cnp.ClusterNetworkPolicySubject) ([]*podRec, string, error) {
	var nsLS, podLS *metav1.LabelSelector
	switch {
	case s.Namespaces != nil && s.Pods != nil:
		return nil, "", fmt.Errorf("both namespaces and pods are set")
	case s.Namespaces != nil:
		nsLS = s.Namespaces
	case s.Pods != nil:
		nsLS, podLS = &s.Pods.NamespaceSelector, &s.Pods.PodSelector
	default:
		return nil, "", fmt.Errorf("neither namespaces nor pods is set")
	}
	nsKey, nsSel, err := c.selector(nsLS)
	if err != nil {
		return nil, "", fmt.Errorf("namespace selector: %w", err)
	}
	podKey, podSel := "", labels.Everything()
	if podLS != nil {
		if podKey, podSel, err = c.selector(podLS); err != nil {
			return nil, "", fmt.Errorf("pod selector: %w", err)
		}
	}
	var out []*podRec
	for _, ns := range c.nsEntry(nsKey, nsSel).members {
		for _, pod := range c.podEntry(ns, podKey, podSel, true).list {
			out = append(out, pod)
		}
	}
	return out, defKey("subject", nsKey, podKey), nil
}

// clusterRule is the input of rule i of p for direction d, with its peers
// and ports in NetworkPolicy's form; false when the rule matches nothing.
func (c *policyBuilder) clusterRule(p *cnp.ClusterNetworkPolicy, tier ruleset.Tier, d direction, i int) (ruleInput, bool) {
	var (
		protos []cnp.ClusterNetworkPolicyProtocol
		peers  []clusterPeer
	)
	if d == dirIngress {
		r := p.Spec.Ingress[i]
		protos = r.Protocols
		for _, f := range r.From {
			peers = append(peers, clusterPeer{namespaces: f.Namespaces, pods: f.Pods})
		}
	} else {
		r := p.Spec.Egress[i]
		protos = r.Protocols
		for _, t := range r.To {
			peers = append(peers, clusterPeer{namespaces: t.Namespaces, pods: t.Pods, nodes: t.Nodes, networks: t.Networks, domains: t.DomainNames})
		}
	}
	in, ok := c.clusterAction(p, tier, d, i)
	if !ok {
		return ruleInput{}, false
	}
	where := in.owner.String()
	failClosed := in.failClosed
	all := false
	for j, peer := range peers {
		if peer.onlyDomains() {
			in.domains = append(in.domains, c.domainNames(where, j, peer.domains, !failClosed)...)
			continue
		}
		list, note, known := c.clusterPeerList(peer)
		if note != "" {
			c.problem("%s: peer %d: %s", where, j, note)
		}
		switch {
		case !known && failClosed:
			c.problem("%s: peer %d: no peer weir knows (the rule acts on every peer)", where, j)
			all = true
		case !known:
			c.problem("%s: peer %d: no peer weir knows (matches nothing)", where, j)
		}
		in.peers = append(in.peers, list...)
	}
	slices.Sort(in.domains)
	in.domains = slices.Compact(in.domains)
	if !all && len(in.peers) == 0 && len(in.domains) == 0 {
		ok = false // its peers resolve to nothing: it matches nothing
	}
	if all {
		in.peers = nil
	}
	ports, known := c.clusterPorts(protos)
	if !known {
		if !failClosed {
			c.problem("%s: a protocol weir does not know (matches nothing)", where)
			return ruleInput{}, false
		}
		c.problem("%s: a protocol weir does not know (the rule acts on every port)", where)
		ports = nil
	}
	in.ports = ports
	return in, ok
}

// clusterAction is the input of rule i of p for direction d with its
// owner, counter and verdict but no peer or port yet: it matches
// everything. False when the action is unknown (reported; the rule is
// ignored).
func (c *policyBuilder) clusterAction(p *cnp.ClusterNetworkPolicy, tier ruleset.Tier, d direction, i int) (ruleInput, bool) {
	name := ""
	if d == dirIngress {
		name = p.Spec.Ingress[i].Name
	} else {
		name = p.Spec.Egress[i].Name
	}
	action := actionOf(p, d, i)
	in := ruleInput{
		dir: d,
		owner: ruleset.Owner{Kind: ruleset.OwnerPolicyRule, Tier: tier, Policy: p.Name, Direction: d.long(), Rule: i,
			RuleName: name, Action: string(action)},
		counter:    clusterCounterName(tier, d, c.ps.hash, p.Name, i),
		failClosed: action != cnp.ClusterNetworkPolicyRuleActionAccept,
	}
	switch {
	case action == cnp.ClusterNetworkPolicyRuleActionAccept:
		in.verdict = ruleset.Verdict{Kind: ruleset.VerdictAccept}
	case action == cnp.ClusterNetworkPolicyRuleActionDeny:
		in.verdict = ruleset.Verdict{Kind: ruleset.VerdictDrop}
		in.log = c.x.deniedLog(in.counter)
	case action == cnp.ClusterNetworkPolicyRuleActionPass && tier == ruleset.TierBaseline:
		in.verdict = ruleset.Verdict{Kind: ruleset.VerdictAccept} // to the default: allow
	case action == cnp.ClusterNetworkPolicyRuleActionPass:
		m := c.x.passMark
		in.verdict, in.mark = ruleset.Verdict{Kind: ruleset.VerdictReturn}, &ruleset.MarkSet{Mask: m, Value: m}
	default:
		c.problem("%s: unknown action %q (rule ignored)", in.owner.String(), action)
		return ruleInput{}, false
	}
	return in, true
}

// clusterPeer is one peer of a rule, ingress or egress.
type clusterPeer struct {
	namespaces *metav1.LabelSelector
	pods       *cnp.NamespacedPod
	nodes      *metav1.LabelSelector
	networks   []cnp.CIDR
	domains    []cnp.DomainName
}

// onlyDomains tells whether the peer sets domainNames and nothing else.
func (p clusterPeer) onlyDomains() bool {
	return len(p.domains) > 0 && p.namespaces == nil && p.pods == nil && p.nodes == nil && len(p.networks) == 0
}

// clusterPeerList returns a peer in NetworkPolicy's form (nodes become
// the ipBlocks of their addresses), a note to report, and false when the
// peer sets no field weir knows.
func (c *policyBuilder) clusterPeerList(p clusterPeer) ([]networkingv1.NetworkPolicyPeer, string, bool) {
	switch {
	case p.namespaces != nil:
		return []networkingv1.NetworkPolicyPeer{{NamespaceSelector: p.namespaces}}, "", true
	case p.pods != nil:
		return []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &p.pods.NamespaceSelector, PodSelector: &p.pods.PodSelector}}, "", true
	case len(p.networks) > 0:
		out := make([]networkingv1.NetworkPolicyPeer, 0, len(p.networks))
		for _, n := range p.networks {
			out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: string(n)}})
		}
		return out, "", true
	case p.nodes != nil:
		list, err := c.nodePeers(p.nodes)
		if err != nil {
			return nil, fmt.Sprintf("nodes: %v", err), false
		}
		return list, "", true
	}
	return nil, "", false
}

// nodePeers returns the addresses of the nodes sel matches, as ipBlocks.
// The policy is compiled again whenever a node changes.
func (c *policyBuilder) nodePeers(ls *metav1.LabelSelector) ([]networkingv1.NetworkPolicyPeer, error) {
	_, sel, err := c.selector(ls)
	if err != nil {
		return nil, err
	}
	c.uses(c.x.nodeUsers)
	var addrs []netip.Addr
	for _, n := range c.x.nodes {
		if sel.Matches(labels.Set(n.Labels)) {
			addrs = append(addrs, n.Addrs...)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	out := make([]networkingv1.NetworkPolicyPeer, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: netip.PrefixFrom(a, a.BitLen()).String()}})
	}
	return out, nil
}

// clusterPorts returns a rule's protocols as NetworkPolicy ports (none:
// every port), and false when an entry sets nothing weir knows. A named
// port stands for the container ports of that name of any protocol: it
// becomes one entry per protocol some pod defines it for.
func (c *policyBuilder) clusterPorts(protos []cnp.ClusterNetworkPolicyProtocol) ([]networkingv1.NetworkPolicyPort, bool) {
	var out []networkingv1.NetworkPolicyPort
	for _, p := range protos {
		switch {
		case p.TCP != nil:
			out = append(out, numericPort(corev1.ProtocolTCP, p.TCP.DestinationPort))
		case p.UDP != nil:
			out = append(out, numericPort(corev1.ProtocolUDP, p.UDP.DestinationPort))
		case p.SCTP != nil:
			out = append(out, numericPort(corev1.ProtocolSCTP, p.SCTP.DestinationPort))
		case p.DestinationNamedPort != "":
			out = append(out, c.namedPorts(p.DestinationNamedPort)...)
		default:
			return nil, false
		}
	}
	return out, true
}

func numericPort(proto corev1.Protocol, p *cnp.Port) networkingv1.NetworkPolicyPort {
	out := networkingv1.NetworkPolicyPort{Protocol: &proto}
	switch {
	case p == nil: // every port of the protocol
	case p.Range != nil:
		from := intstr.FromInt32(p.Range.Start)
		out.Port, out.EndPort = &from, &p.Range.End
	default:
		n := intstr.FromInt32(p.Number)
		out.Port = &n
	}
	return out
}

// namedPorts is a named port of any protocol: an entry for each protocol
// some pod defines the name for, or a TCP one (reported as defined by no
// pod) when none does.
func (c *policyBuilder) namedPorts(name string) []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	defined := c.definedPorts()
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
		n, err := protoNumber(&proto)
		if err == nil && defined[namedPort{n, name}] != nil {
			out = append(out, namedPolicyPort(proto, name))
		}
	}
	if len(out) == 0 {
		out = append(out, namedPolicyPort(corev1.ProtocolTCP, name))
	}
	return out
}

func namedPolicyPort(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	port := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &port}
}

// tierDispatch returns the elements of the tiers' pod maps: each local pod
// a tier's policies hold jumps to the chain of its selection in that tier.
// It leaves those chains in x.tierChains.
func (x *Compiler) tierDispatch(out map[string][]ruleset.Elem) {
	type key struct {
		tier ruleset.Tier
		d    int
	}
	by := make(map[*podRec]map[key][]*policyState, len(x.local))
	for _, ps := range x.cpOrder { // in evaluation order
		tier := clusterTier(ps.cnp)
		for d, pods := range ps.out.selected {
			for _, p := range pods {
				m := by[p]
				if m == nil {
					m = map[key][]*policyState{}
					by[p] = m
				}
				m[key{tier, d}] = append(m[key{tier, d}], ps)
			}
		}
	}
	npEgress := func(p *podRec) bool { // NetworkPolicy allows these pods their node
		s := x.podSel[p]
		return s != nil && len(s[dirIndex(dirEgress)]) > 0
	}
	x.tierChains = make(map[string]ruleset.Chain, len(x.tierChains))
	for _, p := range sortedPods(by) {
		for k, list := range by[p] {
			name := x.tierSelectionChain(k.tier, [2]direction{dirIngress, dirEgress}[k.d], list)
			jump := &ruleset.Verdict{Kind: ruleset.VerdictJump, Chain: name}
			for _, ip := range p.IPs {
				ip = ip.Unmap()
				f := families[0]
				if !ip.Is4() {
					f = families[1]
				}
				mp := f.tierMap(k.tier, [2]direction{dirIngress, dirEgress}[k.d])
				e := ruleset.Elem{Key: []ruleset.Range{single(ip)}, Verdict: jump}
				out[mp] = append(out[mp], e)
				if k.tier == ruleset.TierBaseline && k.d == dirIndex(dirEgress) && !npEgress(p) {
					out[f.baselineNode] = append(out[f.baselineNode], e)
				}
			}
		}
	}
}

// tierSelectionChain returns the name of the chain of list, the policies
// of tier t holding some pod for direction d, in order, and keeps it in
// x.tierChains. After a policy with an Admin Pass rule, the chain returns
// (clearing the mark) when that rule passed the packet.
func (x *Compiler) tierSelectionChain(t ruleset.Tier, d direction, list []*policyState) string {
	names := make([]string, len(list))
	for i, ps := range list {
		names[i] = ps.key
	}
	name := tierSelectionChainName(t, d, names)
	if _, ok := x.tierChains[name]; ok {
		return name
	}
	ch := ruleset.Chain{Name: name}
	for _, ps := range list {
		if ps.out.pass[dirIndex(d)] { // a packet comes in with the bit clear, whoever set it
			ch.Rules = append(ch.Rules, ruleset.Rule{Mark: &ruleset.MarkSet{Mask: x.passMark}})
			break
		}
	}
	for _, ps := range list {
		ch.Rules = append(ch.Rules, ruleset.Rule{
			Verdict: ruleset.Verdict{Kind: ruleset.VerdictJump, Chain: clusterChainName(t, d, ps.hash, ps.cnp.Name)},
			Owner:   ruleset.Owner{Kind: ruleset.OwnerPolicy, Tier: t, Policy: ps.cnp.Name, Direction: d.long()},
		})
		if ps.out.pass[dirIndex(d)] {
			ch.Rules = append(ch.Rules, ruleset.Rule{
				Matches: []ruleset.Match{{Kind: ruleset.MatchMark, Mark: x.passMark}},
				Mark:    &ruleset.MarkSet{Mask: x.passMark},
				Verdict: ruleset.Verdict{Kind: ruleset.VerdictReturn},
				Owner:   ruleset.Owner{Kind: ruleset.OwnerPass, Tier: t, Direction: d.long()},
			})
		}
	}
	x.tierChains[name] = ch
	return name
}

// deniedLog is the log statement of a Deny rule whose counter is counter,
// when denied packets are logged: the prefix names the counter, whose
// owner names the rule.
func (x *Compiler) deniedLog(counter string) *ruleset.Log {
	l := x.logDenied
	if l.Group == 0 {
		return nil
	}
	prefix := DeniedPrefix + counter
	if len(prefix) > maxLogPrefix {
		prefix = prefix[:maxLogPrefix]
	}
	return &ruleset.Log{Prefix: prefix, Group: l.Group, Rate: l.Rate}
}

// baselineRules end the forward base chain of direction d: the Baseline
// tier's pod map of each family.
func baselineRules(d direction) []ruleset.Rule {
	var out []ruleset.Rule
	for _, f := range families {
		pod, _ := f.ends(d)
		out = append(out, vmapRule(f.tierMap(ruleset.TierBaseline, d), pod))
	}
	return out
}

// inputChain takes the packets local pods send to their node's own
// addresses (the input hook) through the Admin tier; what it does not
// decide is accepted, as NetworkPolicy always allows a pod its node.
func inputChain(ifPrefix string) ruleset.Chain {
	fromPod := ruleset.Match{Kind: ruleset.MatchIifname, IfPrefix: ifPrefix}
	vmap := func(m string, f ruleset.Field) ruleset.Rule {
		r := vmapRule(m, f)
		r.Matches = []ruleset.Match{fromPod}
		return r
	}
	ch := ruleset.Chain{
		Name: chainInput,
		Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookInput, Priority: ruleset.PriorityFilter},
	}
	established := ctRule(ruleset.CtEstablished|ruleset.CtRelated, ruleset.VerdictAccept)
	established.Matches = append([]ruleset.Match{fromPod}, established.Matches...)
	ch.Rules = append(ch.Rules, established) // pods' only: the node's own traffic is none of weir's business
	for _, f := range families {
		ch.Rules = append(ch.Rules, vmap(f.tierMap(ruleset.TierAdmin, dirEgress), f.saddr))
	}
	for _, f := range families {
		ch.Rules = append(ch.Rules, vmap(f.baselineNode, f.saddr))
	}
	return ch
}
