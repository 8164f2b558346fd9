package synth

import (
	"fmt"
	"math/rand"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/policy"
)

// Random makes random small clusters (Snapshot) and random changes to them
// (Mutate), for the differential tests: an incremental path fed the
// changes must give what a full one gives. Changes never modify a map,
// slice or policy an earlier snapshot holds. The same seed gives the same
// clusters and changes.
type Random struct {
	r   *rand.Rand
	seq int
	// manyPorts is added, half the time, to the number of ports of a
	// rule: policy's inline limit, so that rules also use its ports set.
	manyPorts int
	// Valid, when set, makes only input the API accepts: no invalid
	// selector, no unknown protocol (the random draws stay the same).
	Valid bool
}

// NewRandom returns a generator seeded with seed; manyPorts is the port
// count beyond which policy puts a rule's ports in a set
// (policy's maxInlinePorts).
func NewRandom(seed int64, manyPorts int) *Random {
	return &Random{r: rand.New(rand.NewSource(seed)), manyPorts: manyPorts}
}

// Rand is the generator's source, for a test's own random choices.
func (g *Random) Rand() *rand.Rand { return g.r }

var (
	genNamespaces = []string{"a", "b", "c", "d"}
	genApps       = []string{"web", "db", "cache"}
	genNodes      = []string{"n1", "n1", "n2", "n3"}
)

func (g *Random) pick(list []string) string { return list[g.r.Intn(len(list))] }

// Snapshot is a new random cluster: three namespaces, 20 pods, 8 policies.
func (g *Random) Snapshot() policy.Snapshot {
	s := policy.Snapshot{
		Node: policy.Node{Name: "n1", Addrs: []netip.Addr{netip.MustParseAddr("192.168.0.1")},
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	}
	for _, ns := range genNamespaces[:3] {
		s.Namespaces = append(s.Namespaces, policy.Namespace{Name: ns, Labels: g.nsLabels()})
	}
	for i := 0; i < 20; i++ {
		s.Pods = append(s.Pods, g.pod())
	}
	for i := 0; i < 8; i++ {
		s.Policies = append(s.Policies, g.policy())
	}
	s.Nodes = g.nodes()
	for i := 0; i < 5; i++ {
		s.ClusterPolicies = append(s.ClusterPolicies, g.clusterPolicy())
	}
	return s
}

func (g *Random) nsLabels() map[string]string {
	l := map[string]string{"team": g.pick([]string{"t1", "t2"})}
	if g.r.Intn(2) == 0 {
		l["env"] = g.pick([]string{"prod", "dev"})
	}
	return l
}

func (g *Random) labels() map[string]string {
	l := map[string]string{"app": g.pick(genApps)}
	if g.r.Intn(2) == 0 {
		l["role"] = g.pick([]string{"x", "y"})
	}
	return l
}

func (g *Random) ips() []netip.Addr {
	g.seq++
	ips := []netip.Addr{netip.AddrFrom4([4]byte{10, byte(1 + g.r.Intn(3)), byte(g.seq >> 8), byte(g.seq)})}
	if g.r.Intn(30) == 0 { // rare: the cluster gains and loses IPv6
		ips = append(ips, netip.AddrFrom16([16]byte{0xfd, 0, 15: byte(g.seq)}))
	}
	return ips
}

func (g *Random) ports() []policy.ContainerPort {
	var out []policy.ContainerPort
	for i := g.r.Intn(3); i > 0; i-- {
		out = append(out, policy.ContainerPort{Name: g.pick([]string{"http", "dns", "metrics"}),
			Protocol: g.pick([]string{"TCP", "UDP", ""}), Port: int32(80 + g.r.Intn(5))})
	}
	return out
}

func (g *Random) pod() policy.Pod {
	g.seq++
	return policy.Pod{
		Namespace: g.podNamespace(), Name: fmt.Sprint("p", g.seq), Node: g.pick(genNodes),
		Labels: g.labels(), IPs: g.ips(), Ports: g.ports(), HostNetwork: g.r.Intn(15) == 0,
	}
}

// podNamespace is mostly one of genNamespaces, rarely a namespace whose
// first pod comes and last pod goes (and that no Namespace lists).
func (g *Random) podNamespace() string {
	if g.r.Intn(12) == 0 {
		return g.pick([]string{"e", "f"})
	}
	return g.pick(genNamespaces)
}

func (g *Random) selector() *metav1.LabelSelector {
	switch g.r.Intn(6) {
	case 0:
		return &metav1.LabelSelector{}
	case 1:
		op := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn,
			metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}[g.r.Intn(4)]
		e := metav1.LabelSelectorRequirement{Key: g.pick([]string{"app", "role"}), Operator: op}
		if op == metav1.LabelSelectorOpIn || op == metav1.LabelSelectorOpNotIn {
			e.Values = []string{g.pick(genApps), g.pick([]string{"x", "y"})}
		}
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{e}}
	case 2:
		if g.r.Intn(4) == 0 && !g.Valid { // invalid: reported, fails closed
			return &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bad value!"}}
		}
	}
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": g.pick(genApps)}}
}

func (g *Random) nsSelector() *metav1.LabelSelector {
	switch g.r.Intn(4) {
	case 0:
		return &metav1.LabelSelector{}
	case 1:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": g.pick([]string{"a", "b", "e", "f"})}}
	case 2:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpExists}}}
	}
	return &metav1.LabelSelector{MatchLabels: map[string]string{"team": g.pick([]string{"t1", "t2"})}}
}

func (g *Random) peers() []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for i := g.r.Intn(4); i > 0; i-- {
		switch g.r.Intn(4) {
		case 0:
			out = append(out, networkingv1.NetworkPolicyPeer{PodSelector: g.selector()})
		case 1:
			out = append(out, networkingv1.NetworkPolicyPeer{NamespaceSelector: g.nsSelector()})
		case 2:
			out = append(out, networkingv1.NetworkPolicyPeer{PodSelector: g.selector(), NamespaceSelector: g.nsSelector()})
		default:
			b := &networkingv1.IPBlock{CIDR: g.pick([]string{"10.0.0.0/8", "10.2.0.0/16", "fd00::/8", "172.17.0.0/16"})}
			if g.r.Intn(2) == 0 {
				b.Except = []string{g.pick([]string{"10.2.0.0/24", "10.1.0.0/16", "fd00::/64"})}
			}
			out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: b})
		}
	}
	return out
}

func (g *Random) policyPorts() []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	n := g.r.Intn(3)
	if g.r.Intn(2) == 0 {
		n += g.manyPorts // sometimes enough for the ports set
	}
	for i := n; i > 0; i-- {
		proto := corev1.Protocol(g.pick([]string{"TCP", "UDP", "SCTP", "TCP"}))
		p := networkingv1.NetworkPolicyPort{Protocol: &proto}
		switch g.r.Intn(4) {
		case 0:
			p.Port = fixtures.Named(g.pick([]string{"http", "dns", "nope"}))
		case 1:
			p.Port, p.EndPort = fixtures.Port(1000), fixtures.Ptr(int32(1000+g.r.Intn(100)))
		case 2:
			if g.r.Intn(5) == 0 && !g.Valid {
				bad := corev1.Protocol("ICMP")
				p.Protocol = &bad
			}
		default:
			p.Port = fixtures.Port(int32(80 + g.r.Intn(5)))
		}
		out = append(out, p)
	}
	return out
}

func (g *Random) policy() *networkingv1.NetworkPolicy {
	g.seq++
	ns := g.pick(genNamespaces)
	if g.r.Intn(10) == 0 {
		ns = "" // defaults to "default"
	}
	p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprint("pol", g.seq)}}
	g.fillPolicy(p)
	return p
}

func (g *Random) fillPolicy(p *networkingv1.NetworkPolicy) {
	p.Spec = networkingv1.NetworkPolicySpec{PodSelector: *g.selector()}
	for i := g.r.Intn(3); i > 0; i-- {
		p.Spec.Ingress = append(p.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: g.peers(), Ports: g.policyPorts()})
	}
	for i := g.r.Intn(3); i > 0; i-- {
		p.Spec.Egress = append(p.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: g.peers(), Ports: g.policyPorts()})
	}
	switch g.r.Intn(4) {
	case 0:
		p.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	case 1:
		p.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	}
}

// Mutate returns a changed copy of s and what changed. Unchanged pods,
// namespaces and policies are shared with s, as an agent's snapshots do.
func (g *Random) Mutate(s policy.Snapshot) (policy.Snapshot, string) {
	s.Pods = slices.Clone(s.Pods)
	s.Namespaces = slices.Clone(s.Namespaces)
	s.Policies = slices.Clone(s.Policies)
	s.ClusterPolicies = slices.Clone(s.ClusterPolicies)
	s.Nodes = slices.Clone(s.Nodes)
	pod := func() *policy.Pod {
		if len(s.Pods) == 0 {
			s.Pods = append(s.Pods, g.pod())
		}
		return &s.Pods[g.r.Intn(len(s.Pods))]
	}
	what := "nothing"
	switch n := g.r.Intn(112); {
	case n < 15:
		s.Pods, what = append(s.Pods, g.pod()), "add pod"
	case n < 25 && len(s.Pods) > 0:
		s.Pods, what = deleteOne(g.r, s.Pods), "delete pod"
	case n < 40:
		pod().Labels, what = g.labels(), "relabel pod"
	case n < 48:
		pod().IPs, what = g.ips(), "pod IP"
	case n < 53:
		p := pod()
		p.Node, p.HostNetwork, what = g.pick(genNodes), g.r.Intn(4) == 0, "pod node"
	case n < 58:
		pod().Ports, what = g.ports(), "pod ports"
	case n < 66:
		i := g.r.Intn(len(s.Namespaces))
		s.Namespaces[i].Labels, what = g.nsLabels(), "relabel namespace"
	case n < 69 && len(s.Namespaces) < len(genNamespaces):
		s.Namespaces = append(s.Namespaces, policy.Namespace{Name: genNamespaces[len(s.Namespaces)], Labels: g.nsLabels()})
		what = "add namespace"
	case n < 69:
		s.Namespaces, what = s.Namespaces[:len(s.Namespaces)-1], "delete namespace"
	case n < 77:
		s.Policies, what = append(s.Policies, g.policy()), "add policy"
	case n < 84 && len(s.Policies) > 0:
		s.Policies, what = deleteOne(g.r, s.Policies), "delete policy"
	case n < 93 && len(s.Policies) > 0:
		i := g.r.Intn(len(s.Policies))
		p := s.Policies[i].DeepCopy()
		g.fillPolicy(p)
		s.Policies[i], what = p, "edit policy"
	case n < 94:
		for i, p := range s.Policies { // new objects, same content (manifests read again)
			s.Policies[i] = p.DeepCopy()
		}
		what = "copy policies"
	case n < 95:
		g.r.Shuffle(len(s.Pods), func(i, j int) { s.Pods[i], s.Pods[j] = s.Pods[j], s.Pods[i] })
		what = "reorder pods"
	case n < 96 && len(s.Pods) > 0:
		p := *pod()
		p.Labels = g.labels()
		s.Pods, what = append(s.Pods, p), "duplicate pod"
	case n < 97:
		s.Node.Addrs, what = otherNodeAddrs(s.Node.Addrs), "node addresses"
	case n < 98:
		s.Node.Name, what = g.pick([]string{"n1", "n2"}), "node name"
	case n < 99: // group 0 logs nothing, whatever the rate
		s.LogDenied, what = policy.DeniedLog{Group: uint16(g.r.Intn(3)), Rate: uint32(10 * g.r.Intn(2))}, "log denied"
	case n >= 100:
		what = g.mutateCluster(&s, n-100)
	}
	return s, what
}

// otherNodeAddrs adds an IPv6 address to a node that has one address, and
// takes it away from a node that has two.
func otherNodeAddrs(addrs []netip.Addr) []netip.Addr {
	if len(addrs) == 1 {
		return append(slices.Clone(addrs), netip.MustParseAddr("fd99::1"))
	}
	return addrs[:1]
}

// deleteOne removes a random element of list, in place.
func deleteOne[T any](r *rand.Rand, list []T) []T {
	i := r.Intn(len(list))
	return slices.Delete(list, i, i+1)
}
