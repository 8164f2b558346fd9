package snapshot

import (
	"fmt"
	"math/rand"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/weir-cni/weir/controller/snapshot/snapshottest"
	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/textdiff"
)

var cidrs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}

// checkView compares the view fed with the store's changes, and a view
// reset from a full listing, with Build of a full listing.
func checkView(t *testing.T, step string, s *store, incr, full *View) {
	t.Helper()
	incr.Apply(s.changed)
	s.clearChanges()
	o := s.objects()
	full.Apply(Changes{Full: true, Objects: o})
	want := snapshottest.Canonical(Build("n1", cidrs, o))
	si, sf := incr.Snapshot("n1", cidrs), full.Snapshot("n1", cidrs)
	if got := snapshottest.Canonical(si); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: view fed by changes: %s", step, snapshottest.DescribeDiff(got, want))
	}
	if got := snapshottest.Canonical(sf); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: view reset from a listing: %s", step, snapshottest.DescribeDiff(got, want))
	}
	checkPodDelta(t, step+", changes", incr, si)
	checkPodDelta(t, step+", listing", full, sf)
	if got := incr.Objects().Nodes; len(got) != len(o.Nodes) {
		t.Fatalf("%s: reconcilers get %d nodes, want %d", step, len(got), len(o.Nodes))
	}
}

// deltaCheck is, per view that checkPodDelta saw, its last snapshot
// (with a pod slice of its own) and the Compiler that compiled it.
type deltaCheck struct {
	last policy.Snapshot
	x    *policy.Compiler
}

var deltaChecks = map[*View]*deltaCheck{}

// checkPodDelta checks s's PodDelta against the last snapshot of v it
// saw: when v made none since, the delta must be relative to it, name
// each listed pod where s holds it (or -1), and list every pod added,
// changed or removed since. A Compiler given v's snapshots one after the
// other must compile each as Compile does.
func checkPodDelta(t *testing.T, step string, v *View, s policy.Snapshot) {
	t.Helper()
	dc, ok := deltaChecks[v]
	if !ok {
		dc = &deltaCheck{x: policy.NewCompiler()}
		deltaChecks[v] = dc
		t.Cleanup(func() { delete(deltaChecks, v) })
	}
	if got, want := dc.x.Compile(s).String(), policy.Compile(s).String(); got != want {
		t.Fatalf("%s: the Compiler given the view's snapshots differs from Compile:\n%s", step, textdiff.Lines(want, got))
	}
	prev := dc.last
	dc.last = s
	dc.last.Pods = slices.Clone(s.Pods)
	d := s.PodDelta
	switch {
	case s.Seq == 0 || s.Seq == prev.Seq || ok && (d == nil || d.Base == 0):
		t.Fatalf("%s: seq %d, delta %+v after seq %d", step, s.Seq, d, prev.Seq)
	case !ok || d.Base != prev.Seq: // v made snapshots in between
		return
	}
	listed := map[podName]int{}
	for _, c := range d.Changed {
		listed[podName{c.Namespace, c.Name}] = c.Index
	}
	was := map[podName]policy.Pod{}
	for _, p := range prev.Pods {
		was[podName{p.Namespace, p.Name}] = p
	}
	for i, p := range s.Pods {
		n := podName{p.Namespace, p.Name}
		if j, ok := listed[n]; ok && j != i {
			t.Fatalf("%s: delta lists %v at %d, the snapshot holds it at %d", step, n, j, i)
		} else if old, had := was[n]; !ok && (!had || !reflect.DeepEqual(old, p)) {
			t.Fatalf("%s: delta leaves out %v, added or changed", step, n)
		}
		delete(was, n)
	}
	for n := range was {
		if i, ok := listed[n]; !ok || i != -1 {
			t.Fatalf("%s: delta lists removed %v at %d (listed %v)", step, n, i, ok)
		}
	}
}

func withLabels(p *corev1.Pod, labels map[string]string) *corev1.Pod {
	c := p.DeepCopy()
	c.Labels = labels
	return c
}

func testNode(name, cidr, addr string) *corev1.Node {
	n := node(name, []string{cidr}, addr)
	return n
}

// withNode returns a copy of n changed by edit, as an update replaces it.
func withNode(n *corev1.Node, edit func(*corev1.Node)) *corev1.Node {
	c := n.DeepCopy()
	edit(c)
	return c
}

// nodeAddrList lists node status addresses from type, address pairs.
func nodeAddrList(pairs ...any) []corev1.NodeAddress {
	var out []corev1.NodeAddress
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, corev1.NodeAddress{Type: pairs[i].(corev1.NodeAddressType), Address: pairs[i+1].(string)})
	}
	return out
}

// cnp is a ClusterNetworkPolicy at generation gen.
func cnp(name string, tier cnpv1beta1.Tier, priority int32, gen int64) *cnpv1beta1.ClusterNetworkPolicy {
	p := fixtures.ClusterPolicy(name, tier, priority)
	p.Generation = gen
	return p
}

func TestViewMatchesFullRelist(t *testing.T) {
	now := metav1.Now()
	steps := []struct {
		name string
		do   func(s *store)
	}{
		{"initial cluster", func(s *store) {
			s.putNS("a", map[string]string{"team": "x"})
			s.putNS("b", nil)
			s.putNode(testNode("n1", "10.1.0.0/24", "192.168.0.1"))
			s.putNode(testNode("n2", "10.1.1.0/24", "192.168.0.2"))
			for i := 0; i < 6; i++ {
				s.putPod(pod([]string{"a", "b"}[i%2], fmt.Sprint("p", i), []string{"n1", "n2"}[i%2],
					map[string]string{"app": fmt.Sprint(i % 3)}, fmt.Sprintf("10.1.%d.%d", i%2, i+1)))
			}
			s.putPolicy(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "deny"}})
		}},
		{"pod relabelled", func(s *store) { s.putPod(withLabels(s.getPod("a", "p0"), map[string]string{"app": "new"})) }},
		{"pod labels removed", func(s *store) { s.putPod(withLabels(s.getPod("b", "p1"), nil)) }},
		{"pod deleted", func(s *store) { s.delPod("a", "p2") }},
		{"delete of a pod never seen", func(s *store) { s.delPod("a", "ghost") }},
		{"pod added", func(s *store) { s.putPod(pod("a", "p9", "n1", map[string]string{"app": "9"}, "10.1.0.99")) }},
		{"pod loses its address", func(s *store) {
			p := s.getPod("a", "p4").DeepCopy()
			p.Status.PodIPs = nil
			s.putPod(p)
		}},
		{"pod gets its address back", func(s *store) {
			p := s.getPod("a", "p4").DeepCopy()
			p.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.44"}}
			s.putPod(p)
		}},
		{"pod finishes", func(s *store) {
			p := s.getPod("b", "p3").DeepCopy()
			p.Status.Phase = corev1.PodSucceeded
			s.putPod(p)
		}},
		{"pod being deleted", func(s *store) {
			p := s.getPod("b", "p5").DeepCopy()
			p.DeletionTimestamp = &now
			s.putPod(p)
		}},
		{"pod recreated under the same name on another node", func(s *store) {
			s.putPod(pod("a", "p0", "n2", map[string]string{"app": "again"}, "10.1.1.50"))
		}},
		{"named container port added", func(s *store) {
			p := s.getPod("a", "p9").DeepCopy()
			p.Spec.Containers = []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}}}
			s.putPod(p)
		}},
		{"namespace relabelled", func(s *store) { s.putNS("a", map[string]string{"team": "y"}) }},
		{"namespace deleted while its pods remain (implicit namespace)", func(s *store) { s.delNS("b") }},
		{"pod in a namespace that has no object", func(s *store) {
			s.putPod(pod("c", "q1", "n1", nil, "10.1.0.77"))
		}},
		{"last pod of an implicit namespace deleted", func(s *store) { s.delPod("c", "q1") }},
		{"every pod of an implicit namespace leaves the snapshot", func(s *store) {
			for _, name := range []string{"p1", "p3", "p5"} {
				if p := s.getPod("b", name); p != nil {
					p = p.DeepCopy()
					p.Status.PodIPs = nil
					s.putPod(p)
				}
			}
		}},
		{"namespace object created for pods already there", func(s *store) { s.putNS("b", map[string]string{"env": "dev"}) }},
		{"local node address changed", func(s *store) { s.putNode(testNode("n1", "10.1.0.0/24", "192.168.0.9")) }},
		{"local node pod CIDR changed", func(s *store) { s.putNode(testNode("n1", "10.1.8.0/24", "192.168.0.9")) }},
		{"other node changed", func(s *store) { s.putNode(testNode("n2", "10.1.9.0/24", "192.168.0.2")) }},
		{"local node deleted", func(s *store) { s.delNode("n1") }},
		{"local node back", func(s *store) { s.putNode(testNode("n1", "10.1.0.0/24", "192.168.0.1")) }},
		{"policy changed", func(s *store) {
			s.putPolicy(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "deny"},
				Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}}})
		}},
		{"policy added", func(s *store) {
			s.putPolicy(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "allow"}})
		}},
		{"policy deleted", func(s *store) { s.delPolicy("a", "deny") }},
		{"cluster policies added", func(s *store) {
			s.putCNP(cnp("zz-baseline", cnpv1beta1.BaselineTier, 5, 1))
			s.putCNP(cnp("admin", cnpv1beta1.AdminTier, 10, 1))
		}},
		{"cluster policy updated", func(s *store) { s.putCNP(cnp("admin", cnpv1beta1.AdminTier, 3, 2)) }},
		{"other node relabelled", func(s *store) {
			s.putNode(withNode(s.getNode("n2"), func(n *corev1.Node) { n.Labels = map[string]string{"zone": "b"} }))
		}},
		{"node reports more addresses: ExternalIP, a hostname, a repeated and a mapped one", func(s *store) {
			s.putNode(withNode(s.getNode("n2"), func(n *corev1.Node) {
				n.Status.Addresses = append(n.Status.Addresses, nodeAddrList(corev1.NodeExternalIP, "203.0.113.2",
					corev1.NodeHostName, "n2", corev1.NodeExternalIP, "192.168.0.2",
					corev1.NodeInternalIP, "::ffff:10.9.9.9", corev1.NodeInternalIP, "fd00::2")...)
			}))
		}},
		{"node heartbeat changes nothing peers see", func(s *store) {
			s.putNode(withNode(s.getNode("n2"), func(n *corev1.Node) { n.ResourceVersion = "2" }))
		}},
		{"node labels removed", func(s *store) {
			s.putNode(withNode(s.getNode("n2"), func(n *corev1.Node) { n.Labels = nil }))
		}},
		{"cluster policy deleted", func(s *store) { s.delCNP("zz-baseline") }},
		{"delete of a cluster policy never seen", func(s *store) { s.delCNP("ghost") }},
		{"several changes in one batch", func(s *store) {
			s.delPod("a", "p4")
			s.putPod(pod("a", "p4", "n1", map[string]string{"app": "x"}, "10.1.0.4"))
			s.putPod(withLabels(s.getPod("a", "p9"), map[string]string{"app": "y"}))
			s.delPod("a", "p9")
			s.putNS("d", nil)
			s.delNS("d")
		}},
		{"everything deleted", func(s *store) {
			for _, kind := range []string{"pod", "ns", "pol", "node", "cnp"} {
				for k, v := range s.o[kind] {
					switch o := v.(type) {
					case *corev1.Pod:
						s.delPod(o.Namespace, o.Name)
					case *corev1.Namespace:
						s.delNS(k)
					case *networkingv1.NetworkPolicy:
						s.delPolicy(o.Namespace, o.Name)
					case *corev1.Node:
						s.delNode(k)
					case *cnpv1beta1.ClusterNetworkPolicy:
						s.delCNP(k)
					}
				}
			}
		}},
	}
	s, incr, full := newStore(), NewView(), NewView()
	for _, st := range steps {
		st.do(s)
		checkView(t, st.name, s, incr, full)
	}
}

// TestViewRandomChangesMatchFullRelist applies many random changes, in
// batches, and compares after every batch.
func TestViewRandomChangesMatchFullRelist(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	s, incr, full := newStore(), NewView(), NewView()
	nss := []string{"a", "b", "c", "d"}
	for batch := 0; batch < 300; batch++ {
		for n := r.Intn(4) + 1; n > 0; n-- {
			ns, name := nss[r.Intn(len(nss))], fmt.Sprint("p", r.Intn(40))
			switch op := r.Intn(12); {
			case op < 4: // add or replace a pod, sometimes without an address or finished
				p := pod(ns, name, fmt.Sprint("n", 1+r.Intn(2)), map[string]string{"app": fmt.Sprint(r.Intn(3))},
					fmt.Sprintf("10.2.%d.%d", r.Intn(4), r.Intn(250)+1))
				if r.Intn(5) == 0 {
					p.Status.PodIPs = nil
				}
				if r.Intn(8) == 0 {
					p.Status.Phase = corev1.PodFailed
				}
				s.putPod(p)
			case op < 6:
				s.delPod(ns, name)
			case op < 7:
				if r.Intn(2) == 0 {
					s.putNS(ns, map[string]string{"v": fmt.Sprint(r.Intn(3))})
				} else {
					s.delNS(ns)
				}
			case op < 8:
				if r.Intn(3) == 0 {
					s.delNode("n1")
				} else {
					s.putNode(testNode("n1", fmt.Sprintf("10.2.%d.0/24", r.Intn(4)), fmt.Sprintf("192.168.1.%d", r.Intn(9)+1)))
				}
			case op < 10:
				if r.Intn(3) == 0 {
					s.delPolicy(ns, "pol")
				} else {
					s.putPolicy(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pol"}})
				}
			case op < 11: // a cluster policy added, changed or deleted
				name := fmt.Sprint("cnp", r.Intn(5))
				if r.Intn(3) == 0 {
					s.delCNP(name)
				} else {
					s.putCNP(cnp(name, []cnpv1beta1.Tier{cnpv1beta1.AdminTier, cnpv1beta1.BaselineTier}[r.Intn(2)],
						int32(r.Intn(4)), int64(batch)))
				}
			default: // another node added, relabelled, readdressed or deleted
				name := fmt.Sprint("n", 2+r.Intn(2))
				if r.Intn(4) == 0 {
					s.delNode(name)
					continue
				}
				n := testNode(name, "10.3.0.0/24", fmt.Sprintf("192.168.2.%d", r.Intn(3)+1))
				n.Labels = map[string]string{"zone": fmt.Sprint(r.Intn(2))}
				if r.Intn(2) == 0 {
					n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP,
						Address: fmt.Sprintf("192.168.2.%d", r.Intn(3)+1)})
				}
				s.putNode(n)
			}
		}
		checkView(t, fmt.Sprint("batch ", batch), s, incr, full)
	}
}

// TestViewRandomDeletionsAndReusedAddressesMatchFullRelist is
// TestViewRandomChangesMatchFullRelist for pods being deleted and
// addresses reused: few addresses for many pods, so that pods being
// deleted and pods that are not keep sharing them. It also counts that
// the snapshots did keep pods being deleted, and did leave out some.
func TestViewRandomDeletionsAndReusedAddressesMatchFullRelist(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	s, incr, full := newStore(), NewView(), NewView()
	kept, outlived := 0, 0
	for batch := 0; batch < 400; batch++ {
		for n := r.Intn(4) + 1; n > 0; n-- {
			ns, name := []string{"a", "b"}[r.Intn(2)], fmt.Sprint("p", r.Intn(24))
			switch op := r.Intn(12); {
			case op < 3: // a new pod, or the same one recreated
				ips := []string{fmt.Sprintf("10.2.0.%d", r.Intn(8)+1)}
				if r.Intn(4) == 0 {
					ips = append(ips, fmt.Sprintf("fd00::%d", r.Intn(8)+1))
				}
				p := pod(ns, name, fmt.Sprint("n", 1+r.Intn(2)), map[string]string{"app": fmt.Sprint(r.Intn(3))}, ips...)
				p.Spec.HostNetwork = r.Intn(10) == 0
				s.putPod(p)
			case op < 6: // deletion starts
				if p := s.getPod(ns, name); p != nil {
					s.putPod(deleting(p))
				}
			case op < 7:
				if p := s.getPod(ns, name); p != nil {
					s.putPod(withPhase(p, corev1.PodSucceeded))
				}
			case op < 8:
				if p := s.getPod(ns, name); p != nil {
					s.putPod(withLabels(p, map[string]string{"app": fmt.Sprint(r.Intn(3))}))
				}
			default:
				s.delPod(ns, name)
			}
		}
		checkView(t, fmt.Sprint("batch ", batch), s, incr, full)
		in := map[string]bool{}
		for _, p := range incr.list {
			in[p.Namespace+"/"+p.Name] = true
		}
		for _, p := range s.objects().Pods {
			if p.DeletionTimestamp == nil || p.Phase == corev1.PodSucceeded {
				continue
			}
			if in[p.Namespace+"/"+p.Name] {
				kept++
			} else {
				outlived++
			}
		}
	}
	if kept == 0 || outlived == 0 {
		t.Errorf("pods being deleted: %d kept, %d left out for a reused address over every batch; want some of each", kept, outlived)
	}
	t.Logf("pods being deleted: %d kept, %d left out over every batch", kept, outlived)
}

func TestViewKeepsPodOrder(t *testing.T) {
	s, v := newStore(), NewView()
	for i := 0; i < 5; i++ {
		s.putPod(pod("a", fmt.Sprint("p", i), "n1", nil, fmt.Sprintf("10.3.0.%d", i+1)))
		v.Apply(s.changed)
		s.clearChanges()
	}
	names := func() []string {
		var out []string
		for _, p := range v.Snapshot("n1", nil).Pods {
			out = append(out, p.Name)
		}
		return out
	}
	tests := []struct {
		name string
		do   func()
		want []string
	}{
		{"a relabelled pod keeps its place", func() {
			s.putPod(withLabels(s.getPod("a", "p1"), map[string]string{"x": "y"}))
		}, []string{"p0", "p1", "p2", "p3", "p4"}},
		{"a deleted pod's place goes to the last pod", func() { s.delPod("a", "p1") }, []string{"p0", "p4", "p2", "p3"}},
		{"a new pod is appended", func() {
			s.putPod(pod("a", "p7", "n1", nil, "10.3.0.7"))
		}, []string{"p0", "p4", "p2", "p3", "p7"}},
		{"a full listing in another order keeps places", func() {
			o := s.objects()
			sort.Slice(o.Pods, func(i, j int) bool { return o.Pods[i].Name > o.Pods[j].Name })
			s.changed = Changes{Full: true, Objects: o}
		}, []string{"p0", "p4", "p2", "p3", "p7"}},
	}
	for _, tt := range tests {
		tt.do()
		v.Apply(s.changed)
		s.clearChanges()
		if got := names(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: pods %v, want %v", tt.name, got, tt.want)
		}
	}
}
