package policy

import (
	"fmt"
	"math/rand"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
)

// TestCompilerMatchesCompile runs random sequences of snapshot changes
// through one Compiler and checks every result against a fresh Compile of
// the same snapshot: the incremental path must never drift.
func TestCompilerMatchesCompile(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			g := &gen{r: rand.New(rand.NewSource(seed))}
			s := g.snapshot()
			x := NewCompiler()
			var prev ruleset.Ruleset
			for step := 0; step < 200; step++ {
				what := "initial"
				if step > 0 {
					s, what = g.mutate(s)
				}
				fresh := NewCompiler()
				got, want := x.Compile(s), fresh.Compile(s)
				if got.String() != want.String() {
					t.Fatalf("step %d (%s): text differs from Compile:\n%s", step, what, textdiff.Lines(want.String(), got.String()))
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("step %d (%s): ruleset differs from Compile (text equal)", step, what)
				}
				if a, b := cacheKeys(x), cacheKeys(fresh); !reflect.DeepEqual(a, b) {
					t.Fatalf("step %d (%s): cached selectors differ from a fresh Compiler's (leak?):\n%v\n%v", step, what, a, b)
				}
				if ch := ruleset.Diff(prev, got); !ch.Full && patch(prev, ch).String() != got.String() {
					t.Fatalf("step %d (%s): Diff does not turn the previous ruleset into this one", step, what)
				}
				prev = got
			}
		})
	}
}

// cacheKeys lists the selector results a Compiler keeps, with their
// members and users.
func cacheKeys(x *Compiler) []string {
	var out []string
	for id, e := range x.entries {
		out = append(out, fmt.Sprintf("%q %v: %d pods, %d users", id.ns+"/"+id.sel, id.local, len(e.members), len(e.users)))
	}
	for k, g := range x.groups {
		out = append(out, fmt.Sprintf("group %s %q: id %d, %d elements, %d users", k.set, k.def, g.id, len(g.elems), g.refs))
	}
	for def := range x.ids {
		out = append(out, fmt.Sprintf("id of %q", def))
	}
	for key, e := range x.nsEntries {
		out = append(out, fmt.Sprintf("ns %q: %v, %d users", key, e.members, len(e.users)))
	}
	slices.Sort(out)
	return out
}

// TestCompilerKeepsOutputsIntact checks that a later Compile does not
// modify the ruleset an earlier one returned (the applier keeps it to
// diff against).
func TestCompilerKeepsOutputsIntact(t *testing.T) {
	g := &gen{r: rand.New(rand.NewSource(42))}
	s := g.snapshot()
	x := NewCompiler()
	prev := x.Compile(s)
	prevText := prev.String()
	for step := 0; step < 200; step++ {
		s, _ = g.mutate(s)
		r := x.Compile(s)
		if prev.String() != prevText {
			t.Fatalf("step %d: Compile modified the previous ruleset", step)
		}
		prev, prevText = r, r.String()
	}
}

// TestDiffIgnoresOrder diffs rulesets whose sets and chains are not sorted
// by name (not as Compile makes them) and expects what the sorted ones give.
func TestDiffIgnoresOrder(t *testing.T) {
	g := &gen{r: rand.New(rand.NewSource(7))}
	s := g.snapshot()
	for step := 0; step < 50; step++ {
		old := Compile(s)
		s, _ = g.mutate(s)
		new := Compile(s)
		want := ruleset.Diff(old, new)
		shuffled := func(r ruleset.Ruleset) ruleset.Ruleset {
			r.Sets, r.Chains = slices.Clone(r.Sets), slices.Clone(r.Chains)
			g.r.Shuffle(len(r.Sets), func(i, j int) { r.Sets[i], r.Sets[j] = r.Sets[j], r.Sets[i] })
			g.r.Shuffle(len(r.Chains), func(i, j int) { r.Chains[i], r.Chains[j] = r.Chains[j], r.Chains[i] })
			return r
		}
		if got := ruleset.Diff(shuffled(old), shuffled(new)); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: diff of shuffled rulesets differs:\n%s\n%s", step, got, want)
		}
	}
}

// gen makes random small clusters and changes to them. Changes never
// modify a map, slice or policy an earlier snapshot holds.
type gen struct {
	r   *rand.Rand
	seq int
}

var (
	genNamespaces = []string{"a", "b", "c", "d"}
	genApps       = []string{"web", "db", "cache"}
	genNodes      = []string{"n1", "n1", "n2", "n3"}
)

func (g *gen) pick(list []string) string { return list[g.r.Intn(len(list))] }

func (g *gen) snapshot() Snapshot {
	s := Snapshot{
		Node: Node{Name: "n1", Addrs: []netip.Addr{netip.MustParseAddr("192.168.0.1")},
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	}
	for _, ns := range genNamespaces[:3] {
		s.Namespaces = append(s.Namespaces, Namespace{Name: ns, Labels: g.nsLabels()})
	}
	for i := 0; i < 20; i++ {
		s.Pods = append(s.Pods, g.pod())
	}
	for i := 0; i < 8; i++ {
		s.Policies = append(s.Policies, g.policy())
	}
	return s
}

func (g *gen) nsLabels() map[string]string {
	l := map[string]string{"team": g.pick([]string{"t1", "t2"})}
	if g.r.Intn(2) == 0 {
		l["env"] = g.pick([]string{"prod", "dev"})
	}
	return l
}

func (g *gen) labels() map[string]string {
	l := map[string]string{"app": g.pick(genApps)}
	if g.r.Intn(2) == 0 {
		l["role"] = g.pick([]string{"x", "y"})
	}
	return l
}

func (g *gen) ips() []netip.Addr {
	g.seq++
	ips := []netip.Addr{netip.AddrFrom4([4]byte{10, byte(1 + g.r.Intn(3)), byte(g.seq >> 8), byte(g.seq)})}
	if g.r.Intn(30) == 0 { // rare: the cluster gains and loses IPv6
		ips = append(ips, netip.AddrFrom16([16]byte{0xfd, 0, 15: byte(g.seq)}))
	}
	return ips
}

func (g *gen) ports() []ContainerPort {
	var out []ContainerPort
	for i := g.r.Intn(3); i > 0; i-- {
		out = append(out, ContainerPort{Name: g.pick([]string{"http", "dns", "metrics"}),
			Protocol: g.pick([]string{"TCP", "UDP", ""}), Port: int32(80 + g.r.Intn(5))})
	}
	return out
}

func (g *gen) pod() Pod {
	g.seq++
	return Pod{
		Namespace: g.podNamespace(), Name: fmt.Sprint("p", g.seq), Node: g.pick(genNodes),
		Labels: g.labels(), IPs: g.ips(), Ports: g.ports(), HostNetwork: g.r.Intn(15) == 0,
	}
}

// podNamespace is mostly one of genNamespaces, rarely a namespace whose
// first pod comes and last pod goes (and that no Namespace lists).
func (g *gen) podNamespace() string {
	if g.r.Intn(12) == 0 {
		return g.pick([]string{"e", "f"})
	}
	return g.pick(genNamespaces)
}

func (g *gen) selector() *metav1.LabelSelector {
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
		if g.r.Intn(4) == 0 { // invalid: reported, fails closed
			return &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bad value!"}}
		}
	}
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": g.pick(genApps)}}
}

func (g *gen) nsSelector() *metav1.LabelSelector {
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

func (g *gen) peers() []networkingv1.NetworkPolicyPeer {
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

func (g *gen) policyPorts() []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	n := g.r.Intn(3)
	if g.r.Intn(2) == 0 {
		n += maxInlinePorts // sometimes enough for the ports set
	}
	for i := n; i > 0; i-- {
		proto := corev1.Protocol(g.pick([]string{"TCP", "UDP", "SCTP", "TCP"}))
		p := networkingv1.NetworkPolicyPort{Protocol: &proto}
		switch g.r.Intn(4) {
		case 0:
			p.Port = ptr(intstr.FromString(g.pick([]string{"http", "dns", "nope"})))
		case 1:
			p.Port, p.EndPort = ptr(intstr.FromInt32(1000)), ptr(int32(1000+g.r.Intn(100)))
		case 2:
			if g.r.Intn(5) == 0 {
				bad := corev1.Protocol("ICMP")
				p.Protocol = &bad
			}
		default:
			p.Port = ptr(intstr.FromInt32(int32(80 + g.r.Intn(5))))
		}
		out = append(out, p)
	}
	return out
}

func (g *gen) policy() *networkingv1.NetworkPolicy {
	g.seq++
	ns := g.pick(genNamespaces)
	if g.r.Intn(10) == 0 {
		ns = "" // defaults to "default"
	}
	p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprint("pol", g.seq)}}
	g.fillPolicy(p)
	return p
}

func (g *gen) fillPolicy(p *networkingv1.NetworkPolicy) {
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

// mutate returns a changed copy of s and what changed. Unchanged pods,
// namespaces and policies are shared with s, as an agent's snapshots do.
func (g *gen) mutate(s Snapshot) (Snapshot, string) {
	s.Pods = slices.Clone(s.Pods)
	s.Namespaces = slices.Clone(s.Namespaces)
	s.Policies = slices.Clone(s.Policies)
	pod := func() *Pod {
		if len(s.Pods) == 0 {
			s.Pods = append(s.Pods, g.pod())
		}
		return &s.Pods[g.r.Intn(len(s.Pods))]
	}
	switch n := g.r.Intn(100); {
	case n < 15:
		s.Pods = append(s.Pods, g.pod())
		return s, "add pod"
	case n < 25 && len(s.Pods) > 0:
		i := g.r.Intn(len(s.Pods))
		s.Pods = slices.Delete(s.Pods, i, i+1)
		return s, "delete pod"
	case n < 40:
		pod().Labels = g.labels()
		return s, "relabel pod"
	case n < 48:
		pod().IPs = g.ips()
		return s, "pod IP"
	case n < 53:
		p := pod()
		p.Node = g.pick(genNodes)
		p.HostNetwork = g.r.Intn(4) == 0
		return s, "pod node"
	case n < 58:
		pod().Ports = g.ports()
		return s, "pod ports"
	case n < 66:
		i := g.r.Intn(len(s.Namespaces))
		s.Namespaces[i].Labels = g.nsLabels()
		return s, "relabel namespace"
	case n < 69:
		if len(s.Namespaces) < len(genNamespaces) {
			s.Namespaces = append(s.Namespaces, Namespace{Name: genNamespaces[len(s.Namespaces)], Labels: g.nsLabels()})
			return s, "add namespace"
		}
		s.Namespaces = s.Namespaces[:len(s.Namespaces)-1]
		return s, "delete namespace"
	case n < 77:
		s.Policies = append(s.Policies, g.policy())
		return s, "add policy"
	case n < 84 && len(s.Policies) > 0:
		i := g.r.Intn(len(s.Policies))
		s.Policies = slices.Delete(s.Policies, i, i+1)
		return s, "delete policy"
	case n < 93 && len(s.Policies) > 0:
		i := g.r.Intn(len(s.Policies))
		p := s.Policies[i].DeepCopy()
		g.fillPolicy(p)
		s.Policies[i] = p
		return s, "edit policy"
	case n < 94:
		for i, p := range s.Policies { // new objects, same content (manifests read again)
			s.Policies[i] = p.DeepCopy()
		}
		return s, "copy policies"
	case n < 95:
		g.r.Shuffle(len(s.Pods), func(i, j int) { s.Pods[i], s.Pods[j] = s.Pods[j], s.Pods[i] })
		return s, "reorder pods"
	case n < 96 && len(s.Pods) > 0:
		p := *pod()
		p.Labels = g.labels()
		s.Pods = append(s.Pods, p)
		return s, "duplicate pod"
	case n < 97:
		if len(s.Node.Addrs) == 1 {
			s.Node.Addrs = append(slices.Clone(s.Node.Addrs), netip.MustParseAddr("fd99::1"))
		} else {
			s.Node.Addrs = s.Node.Addrs[:1]
		}
		return s, "node addresses"
	case n < 98:
		s.Node.Name = g.pick([]string{"n1", "n2"})
		return s, "node name"
	case n < 99: // group 0 logs nothing, whatever the rate
		s.LogDenied = DeniedLog{Group: uint16(g.r.Intn(3)), Rate: uint32(10 * g.r.Intn(2))}
		return s, "log denied"
	}
	return s, "nothing"
}
