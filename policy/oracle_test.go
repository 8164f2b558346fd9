package policy_test

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// oracle decides packets from the API documentation alone, with none of
// the compiler's code: NetworkPolicy (networking.k8s.io/v1) and
// ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1), as weir applies
// them on one node. Per direction, for a local pod: the Admin tier by
// priority then name, rules in order (Accept allows, Deny drops, Pass
// leaves the tier); the NetworkPolicies of the pod's namespace that select
// it, when any: allowed when one of their rules allows; the Baseline tier
// (Accept, Deny; Pass allows); else allowed. A pod to itself is always
// allowed; a local pod and its node always, past the Admin tier. The
// source's egress and the destination's ingress must both allow. It
// expects valid input (synth.Random.Valid).
type oracle struct {
	s        policy.Snapshot
	nsLabels map[string]labels.Set
	byIP     map[netip.Addr]policy.Pod
	nodeIPs  map[netip.Addr]bool
	admin    []*cnp.ClusterNetworkPolicy
	baseline []*cnp.ClusterNetworkPolicy
}

func newOracle(s policy.Snapshot) *oracle {
	o := &oracle{s: s, nsLabels: map[string]labels.Set{}, byIP: map[netip.Addr]policy.Pod{}, nodeIPs: map[netip.Addr]bool{}}
	for _, ns := range s.Namespaces {
		l := labels.Set{"kubernetes.io/metadata.name": ns.Name}
		for k, v := range ns.Labels {
			l[k] = v
		}
		o.nsLabels[ns.Name] = l
	}
	last := map[string]policy.Pod{} // a pod listed twice counts as its last listing
	for _, p := range s.Pods {
		last[p.Namespace+"/"+p.Name] = p
	}
	for _, p := range last {
		if p.HostNetwork {
			continue
		}
		for _, ip := range p.IPs {
			o.byIP[ip.Unmap()] = p
		}
	}
	for _, a := range s.Node.Addrs {
		o.nodeIPs[a.Unmap()] = true
	}
	for _, p := range s.ClusterPolicies {
		if p.Spec.Tier == cnp.AdminTier {
			o.admin = append(o.admin, p)
		} else {
			o.baseline = append(o.baseline, p)
		}
	}
	for _, list := range [][]*cnp.ClusterNetworkPolicy{o.admin, o.baseline} {
		sort.Slice(list, func(i, j int) bool {
			if list[i].Spec.Priority != list[j].Spec.Priority {
				return list[i].Spec.Priority < list[j].Spec.Priority
			}
			return list[i].Name < list[j].Name
		})
	}
	return o
}

func (o *oracle) namespaceLabels(ns string) labels.Set {
	if l, ok := o.nsLabels[ns]; ok {
		return l
	}
	return labels.Set{"kubernetes.io/metadata.name": ns}
}

func sel(ls *metav1.LabelSelector) labels.Selector {
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		panic(err) // valid input only
	}
	return s
}

// decide is the node's verdict on p.
func (o *oracle) decide(p ruleset.Packet) ruleset.VerdictKind {
	src, srcPod := o.byIP[p.Src]
	dst, dstPod := o.byIP[p.Dst]
	srcLocal := srcPod && src.Node == o.s.Node.Name
	dstLocal := dstPod && dst.Node == o.s.Node.Name
	if p.Src == p.Dst && srcLocal {
		return ruleset.VerdictAccept // a pod to itself
	}
	if srcLocal && !o.allows(src, ruleset.Egress, p, o.nodeIPs[p.Dst]) {
		return ruleset.VerdictDrop
	}
	if dstLocal && !o.allows(dst, ruleset.Ingress, p, o.nodeIPs[p.Src]) {
		return ruleset.VerdictDrop
	}
	return ruleset.VerdictAccept
}

// allows is the verdict of pod's policies for direction d; node tells
// that the other end is the pod's node.
func (o *oracle) allows(pod policy.Pod, d ruleset.Direction, p ruleset.Packet, node bool) bool {
	switch o.tier(o.admin, pod, d, p) {
	case cnp.ClusterNetworkPolicyRuleActionAccept:
		return true
	case cnp.ClusterNetworkPolicyRuleActionDeny:
		return false
	}
	if node {
		return true
	}
	if selected, allowed := o.networkPolicies(pod, d, p); selected {
		return allowed
	}
	return o.tier(o.baseline, pod, d, p) != cnp.ClusterNetworkPolicyRuleActionDeny
}

// tier returns the action of the first rule of list that holds pod and
// matches p, or "" when none does.
func (o *oracle) tier(list []*cnp.ClusterNetworkPolicy, pod policy.Pod, d ruleset.Direction, p ruleset.Packet) cnp.ClusterNetworkPolicyRuleAction {
	for _, c := range list {
		if !o.subject(c.Spec.Subject, pod) {
			continue
		}
		if d == ruleset.Ingress {
			for _, r := range c.Spec.Ingress {
				peer := false
				for _, f := range r.From {
					peer = peer || o.podPeer(f.Namespaces, f.Pods, p.Src)
				}
				if peer && o.protocols(r.Protocols, pod, p) {
					return r.Action
				}
			}
			continue
		}
		for _, r := range c.Spec.Egress {
			peer := false
			for _, t := range r.To {
				peer = peer || o.podPeer(t.Namespaces, t.Pods, p.Dst) || o.networks(t.Networks, p.Dst) || o.nodes(t.Nodes, p.Dst)
			}
			dst, ok := o.byIP[p.Dst]
			if peer && o.protocols(r.Protocols, dst, p) && (ok || !namedOnly(r.Protocols)) {
				return r.Action
			}
		}
	}
	return ""
}

// namedOnly tells that every protocol entry is a named port (toward an
// address that is no pod, such a rule matches nothing).
func namedOnly(list []cnp.ClusterNetworkPolicyProtocol) bool {
	return len(list) > 0 && !slices.ContainsFunc(list, func(p cnp.ClusterNetworkPolicyProtocol) bool { return p.DestinationNamedPort == "" })
}

func (o *oracle) subject(s cnp.ClusterNetworkPolicySubject, pod policy.Pod) bool {
	if s.Namespaces != nil {
		return sel(s.Namespaces).Matches(o.namespaceLabels(pod.Namespace))
	}
	return sel(&s.Pods.NamespaceSelector).Matches(o.namespaceLabels(pod.Namespace)) && sel(&s.Pods.PodSelector).Matches(labels.Set(pod.Labels))
}

func (o *oracle) podPeer(ns *metav1.LabelSelector, pods *cnp.NamespacedPod, addr netip.Addr) bool {
	peer, ok := o.byIP[addr]
	switch {
	case !ok:
		return false
	case ns != nil:
		return sel(ns).Matches(o.namespaceLabels(peer.Namespace))
	case pods != nil:
		return sel(&pods.NamespaceSelector).Matches(o.namespaceLabels(peer.Namespace)) && sel(&pods.PodSelector).Matches(labels.Set(peer.Labels))
	}
	return false
}

func (o *oracle) networks(list []cnp.CIDR, addr netip.Addr) bool {
	for _, c := range list {
		if netip.MustParsePrefix(string(c)).Contains(addr) {
			return true
		}
	}
	return false
}

func (o *oracle) nodes(ls *metav1.LabelSelector, addr netip.Addr) bool {
	if ls == nil {
		return false
	}
	for _, n := range o.s.Nodes {
		if sel(ls).Matches(labels.Set(n.Labels)) && slices.Contains(n.Addrs, addr) {
			return true
		}
	}
	return false
}

// protocols tells whether p's protocol and port match a rule's list
// (none: every port); a named port names a container port of dst, of any
// protocol.
func (o *oracle) protocols(list []cnp.ClusterNetworkPolicyProtocol, dst policy.Pod, p ruleset.Packet) bool {
	if len(list) == 0 {
		return true
	}
	in := func(proto uint8, port *cnp.Port) bool {
		if p.Proto != proto {
			return false
		}
		if port.Range != nil {
			return int32(p.DPort) >= port.Range.Start && int32(p.DPort) <= port.Range.End
		}
		return int32(p.DPort) == port.Number
	}
	for _, e := range list {
		switch {
		case e.TCP != nil && in(ruleset.ProtoTCP, e.TCP.DestinationPort),
			e.UDP != nil && in(ruleset.ProtoUDP, e.UDP.DestinationPort),
			e.SCTP != nil && in(ruleset.ProtoSCTP, e.SCTP.DestinationPort):
			return true
		case e.DestinationNamedPort != "":
			for _, cp := range dst.Ports {
				if cp.Name == e.DestinationNamedPort && protoOf(cp.Protocol) == p.Proto && int32(p.DPort) == cp.Port {
					return true
				}
			}
		}
	}
	return false
}

func protoOf(name string) uint8 {
	return map[string]uint8{"": ruleset.ProtoTCP, "TCP": ruleset.ProtoTCP, "UDP": ruleset.ProtoUDP, "SCTP": ruleset.ProtoSCTP}[name]
}

// networkPolicies tells whether a NetworkPolicy of pod's namespace selects
// it for d, and whether one of their rules allows p.
func (o *oracle) networkPolicies(pod policy.Pod, d ruleset.Direction, p ruleset.Packet) (selected, allowed bool) {
	for _, np := range o.s.Policies {
		ns := np.Namespace
		if ns == "" {
			ns = "default"
		}
		if ns != pod.Namespace || !sel(&np.Spec.PodSelector).Matches(labels.Set(pod.Labels)) || !isolates(np, d) {
			continue
		}
		selected = true
		if d == ruleset.Ingress {
			for _, r := range np.Spec.Ingress {
				allowed = allowed || o.npRule(ns, r.From, r.Ports, p.Src, pod, p, false)
			}
		} else {
			for _, r := range np.Spec.Egress {
				dst, ok := o.byIP[p.Dst]
				allowed = allowed || o.npRule(ns, r.To, r.Ports, p.Dst, dst, p, true) && (ok || !npNamedOnly(r.Ports))
			}
		}
	}
	return selected, allowed
}

func npNamedOnly(ports []networkingv1.NetworkPolicyPort) bool {
	return len(ports) > 0 && !slices.ContainsFunc(ports, func(p networkingv1.NetworkPolicyPort) bool {
		return p.Port == nil || p.Port.StrVal == ""
	})
}

func isolates(np *networkingv1.NetworkPolicy, d ruleset.Direction) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return d == ruleset.Ingress || len(np.Spec.Egress) > 0
	}
	want := networkingv1.PolicyTypeIngress
	if d == ruleset.Egress {
		want = networkingv1.PolicyTypeEgress
	}
	return slices.Contains(np.Spec.PolicyTypes, want)
}

// npRule tells whether a NetworkPolicy rule allows p, whose other end is
// peer; dst is the destination pod (a named port names one of its ports).
// Toward an ipBlock (egress) a named port resolves to nothing: named ports
// name ports of pods the rule's selectors pick.
func (o *oracle) npRule(ns string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, peer netip.Addr, dst policy.Pod, p ruleset.Packet, egress bool) bool {
	if len(peers) == 0 {
		return npPorts(ports, dst, p, true)
	}
	for _, pr := range peers {
		if o.npPeer(ns, pr, peer) && npPorts(ports, dst, p, !egress || pr.IPBlock == nil) {
			return true
		}
	}
	return false
}

func (o *oracle) npPeer(ns string, pr networkingv1.NetworkPolicyPeer, addr netip.Addr) bool {
	if b := pr.IPBlock; b != nil {
		if !netip.MustParsePrefix(b.CIDR).Contains(addr) {
			return false
		}
		for _, e := range b.Except {
			if netip.MustParsePrefix(e).Contains(addr) {
				return false
			}
		}
		return true
	}
	pod, ok := o.byIP[addr]
	if !ok {
		return false
	}
	if pr.NamespaceSelector == nil && pod.Namespace != ns {
		return false
	}
	if pr.NamespaceSelector != nil && !sel(pr.NamespaceSelector).Matches(o.namespaceLabels(pod.Namespace)) {
		return false
	}
	return pr.PodSelector == nil || sel(pr.PodSelector).Matches(labels.Set(pod.Labels))
}

// npPorts tells whether p's protocol and port match; named ports only
// when named is set.
func npPorts(ports []networkingv1.NetworkPolicyPort, dst policy.Pod, p ruleset.Packet, named bool) bool {
	if len(ports) == 0 {
		return true
	}
	for _, pt := range ports {
		proto := ruleset.ProtoTCP
		if pt.Protocol != nil {
			proto = protoOf(string(*pt.Protocol))
		}
		if p.Proto != proto {
			continue
		}
		switch {
		case pt.Port == nil:
			return true
		case pt.Port.StrVal != "":
			if !named {
				continue
			}
			for _, cp := range dst.Ports {
				if cp.Name == pt.Port.StrVal && protoOf(cp.Protocol) == proto && int32(p.DPort) == cp.Port {
					return true
				}
			}
		default:
			end := pt.Port.IntVal
			if pt.EndPort != nil {
				end = *pt.EndPort
			}
			if int32(p.DPort) >= pt.Port.IntVal && int32(p.DPort) <= end {
				return true
			}
		}
	}
	return false
}

// TestTiersAgreeWithTheAPI compiles random clusters with both tiers of
// ClusterNetworkPolicy and NetworkPolicies, changes them step by step
// through one Compiler, and checks Trace against the oracle for packets
// between every kind of address (local and remote pods, hostNetwork pods,
// nodes, outside), TCP, UDP and SCTP.
func TestTiersAgreeWithTheAPI(t *testing.T) {
	compared, decisive := 0, map[ruleset.VerdictKind]int{}
	for seed := int64(1); seed <= 40; seed++ {
		g := synth.NewRandom(seed, policy.MaxInlinePorts)
		g.Valid = true
		s := g.Snapshot()
		x := policy.NewCompiler()
		for step := 0; step < 12; step++ {
			what := "first"
			if step > 0 {
				s, what = g.Mutate(s)
			}
			r := x.Compile(s)
			o := newOracle(s)
			for _, p := range oraclePackets(g, s) {
				got, steps := ruleset.Trace(r, p)
				want := o.decide(p)
				compared++
				decisive[want]++
				if got != want {
					t.Fatalf("seed %d step %d (%s): %s -> %s %d/%d: trace %v, oracle %v\n%s\n%s", seed, step, what,
						p.Src, p.Dst, p.Proto, p.DPort, got, want, ruleset.JoinSteps(steps, "\n"), describeTiers(s))
				}
			}
		}
	}
	if decisive[ruleset.VerdictDrop] < compared/20 || decisive[ruleset.VerdictAccept] < compared/20 {
		t.Errorf("too one-sided to test anything: %v of %d", decisive, compared)
	}
	t.Logf("%d packets compared (%v)", compared, decisive)
}

// oraclePackets are packets between the snapshot's addresses, on the
// ports its policies name.
func oraclePackets(g *synth.Random, s policy.Snapshot) []ruleset.Packet {
	var addrs []netip.Addr
	for _, p := range s.Pods {
		addrs = append(addrs, p.IPs...)
	}
	for _, n := range s.Nodes {
		addrs = append(addrs, n.Addrs...)
	}
	addrs = append(addrs, netip.MustParseAddr("172.17.0.9"), netip.MustParseAddr("10.2.0.77"), netip.MustParseAddr("fd00::99"))
	r := g.Rand()
	var out []ruleset.Packet
	for i := 0; i < 150; i++ {
		src, dst := addrs[r.Intn(len(addrs))], addrs[r.Intn(len(addrs))]
		if src.Is4() != dst.Is4() {
			continue
		}
		out = append(out, ruleset.Packet{Src: src, Dst: dst,
			Proto: []uint8{ruleset.ProtoTCP, ruleset.ProtoUDP, ruleset.ProtoSCTP, ruleset.ProtoTCP}[r.Intn(4)],
			DPort: uint16(79 + r.Intn(7))})
	}
	return out
}

// describeTiers prints a snapshot's cluster policies for a failure.
func describeTiers(s policy.Snapshot) string {
	var b strings.Builder
	for _, p := range s.ClusterPolicies {
		fmt.Fprintf(&b, "%s %s %d subject=%+v\n  ingress=%+v\n  egress=%+v\n", p.Name, p.Spec.Tier, p.Spec.Priority, p.Spec.Subject, p.Spec.Ingress, p.Spec.Egress)
	}
	fmt.Fprintf(&b, "nodes=%+v\n", s.Nodes)
	return b.String()
}
