package snapshot

import (
	"net/netip"
	"reflect"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// deleting returns a copy of p being deleted, as the API server leaves a
// pod for its grace period.
func deleting(p *corev1.Pod) *corev1.Pod {
	c := p.DeepCopy()
	now := metav1.Now()
	grace := int64(30)
	c.DeletionTimestamp, c.DeletionGracePeriodSeconds = &now, &grace
	return c
}

func withPhase(p *corev1.Pod, phase corev1.PodPhase) *corev1.Pod {
	c := p.DeepCopy()
	c.Status.Phase = phase
	return c
}

// snapshotOf checks that a view fed the store's changes, and a view reset
// from its listing, equal Build of the listing (see checkView),
// and returns that snapshot.
func snapshotOf(t *testing.T, step string, s *store, incr, full *View) policy.Snapshot {
	t.Helper()
	checkView(t, step, s, incr, full)
	return Build("n1", cidrs, s.objects())
}

func podNames(s policy.Snapshot) []string {
	out := []string{}
	for _, p := range s.Pods {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

const terminatingPolicies = `
- metadata: {namespace: a, name: web}
  spec:
    podSelector: {matchLabels: {app: web}}
    policyTypes: [Ingress, Egress]
    ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]
    egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]
- metadata: {namespace: a, name: db}
  spec:
    podSelector: {matchLabels: {app: db}}
    ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]
`

// TestPodBeingDeletedKeepsIsolationUntilFinished follows a pod through its
// deletion. For its grace period its containers still run: policies still
// select it (both ways), and it is still a peer of the policies of other
// pods. It leaves the snapshot when it is finished or gone.
func TestPodBeingDeletedKeepsIsolationUntilFinished(t *testing.T) {
	ips := map[string]netip.Addr{"web": netip.MustParseAddr("10.1.0.10"), "db": netip.MustParseAddr("10.1.0.20"),
		"client": netip.MustParseAddr("10.1.0.30")}
	web := pod("a", "web", "n1", map[string]string{"app": "web"}, ips["web"].String())
	isolated := map[[2]string]bool{ // from, to -> allowed
		{"client", "web"}: true, {"db", "web"}: false, // web's ingress
		{"web", "db"}: true, {"web", "client"}: false, // web's egress, and web a peer of db's ingress
		{"client", "db"}: false,
	}
	gone := map[[2]string]bool{
		{"db", "web"}:    true,  // the address is no pod's: nothing isolates it
		{"web", "db"}:    false, // nor does any peer set hold it
		{"client", "db"}: false,
	}
	var policies []*networkingv1.NetworkPolicy
	if err := yaml.Unmarshal([]byte(terminatingPolicies), &policies); err != nil {
		t.Fatal(err)
	}
	for _, end := range []struct {
		name string
		do   func(s *store)
	}{
		{"finished (Failed)", func(s *store) { s.putPod(withPhase(s.getPod("a", "web"), corev1.PodFailed)) }},
		{"finished (Succeeded)", func(s *store) { s.putPod(withPhase(s.getPod("a", "web"), corev1.PodSucceeded)) }},
		{"gone from the API server", func(s *store) { s.delPod("a", "web") }},
	} {
		t.Run(end.name, func(t *testing.T) {
			s, incr, full := newStore(), NewView(), NewView()
			s.putNS("a", nil)
			s.putNode(testNode("n1", "10.1.0.0/24", "192.168.0.1"))
			for _, p := range policies {
				s.putPolicy(p)
			}
			s.putPod(web)
			s.putPod(pod("a", "db", "n1", map[string]string{"app": "db"}, ips["db"].String()))
			s.putPod(pod("a", "client", "n1", map[string]string{"app": "client"}, ips["client"].String()))
			for _, st := range []struct {
				name string
				do   func()
				want map[[2]string]bool
			}{
				{"running", func() {}, isolated},
				{"being deleted", func() { s.putPod(deleting(s.getPod("a", "web"))) }, isolated},
				{"relabelled while being deleted", func() {
					s.putPod(withLabels(s.getPod("a", "web"), map[string]string{"app": "web", "v": "2"}))
				}, isolated},
				{end.name, func() { end.do(s) }, gone},
			} {
				st.do()
				rs := policy.Compile(snapshotOf(t, st.name, s, incr, full))
				for fromTo, want := range st.want {
					pkt := ruleset.Packet{Src: ips[fromTo[0]], Dst: ips[fromTo[1]], Proto: ruleset.ProtoTCP, DPort: 80}
					if v, why := ruleset.Trace(rs, pkt); (v == ruleset.VerdictAccept) != want {
						t.Errorf("%s: %s -> %s: %v, want allowed=%v\n%v", st.name, fromTo[0], fromTo[1], v, want, why)
					}
				}
			}
		})
	}
}

// TestReusedAddressGoesToThePodNotBeingDeleted pins who holds an address
// two pods of the source hold. The IPAM hands an address out again only
// after the pod that had it was torn down (CNI DEL), so a pod being
// deleted that shares an address with a pod that is not no longer runs
// with it: the snapshot leaves it out, and the address, its selection and
// its peer sets are the new pod's. Pods of the same kind keep the address
// both, as before. The outcome does not depend on the order the pods come
// in.
func TestReusedAddressGoesToThePodNotBeingDeleted(t *testing.T) {
	const x = "10.1.0.9"
	host := func(name string) *corev1.Pod {
		p := pod("a", name, "n1", nil, "192.168.0.1")
		p.Spec.HostNetwork = true
		return p
	}
	cases := []struct {
		name string
		pods []*corev1.Pod
		want []string
	}{
		{"a pod being deleted keeps an address no other pod holds",
			[]*corev1.Pod{deleting(pod("a", "old", "n1", nil, x))}, []string{"old"}},
		{"a new pod wins the address of a pod being deleted",
			[]*corev1.Pod{deleting(pod("a", "old", "n1", nil, x)), pod("b", "new", "n2", nil, x)}, []string{"new"}},
		{"one reused address of a dual-stack pod is enough",
			[]*corev1.Pod{deleting(pod("a", "old", "n1", nil, x, "fd00::9")), pod("a", "new", "n1", nil, "fd00::9")}, []string{"new"}},
		{"a pod being deleted keeps its address against a finished pod",
			[]*corev1.Pod{deleting(pod("a", "old", "n1", nil, x)), withPhase(pod("a", "done", "n1", nil, x), corev1.PodSucceeded)},
			[]string{"old"}},
		{"two running pods both keep a shared address",
			[]*corev1.Pod{pod("a", "p1", "n1", nil, x), pod("a", "p2", "n1", nil, x)}, []string{"p1", "p2"}},
		{"two pods being deleted both keep a shared address",
			[]*corev1.Pod{deleting(pod("a", "d1", "n1", nil, x)), deleting(pod("a", "d2", "n1", nil, x))}, []string{"d1", "d2"}},
		{"two running pods win over two being deleted",
			[]*corev1.Pod{deleting(pod("a", "d1", "n1", nil, x)), pod("a", "p1", "n1", nil, x),
				deleting(pod("a", "d2", "n1", nil, x)), pod("a", "p2", "n1", nil, x)}, []string{"p1", "p2"}},
		{"hostNetwork pods share the node's address, being deleted or not",
			[]*corev1.Pod{deleting(host("h1")), host("h2")}, []string{"h1", "h2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, reverse := range []bool{false, true} {
				s, incr, full := newStore(), NewView(), NewView()
				s.putNode(testNode("n1", "10.1.0.0/24", "192.168.0.1"))
				for i := range tc.pods {
					p := tc.pods[i]
					if reverse {
						p = tc.pods[len(tc.pods)-1-i]
					}
					s.putPod(p)
					snapshotOf(t, "add "+p.Name, s, incr, full)
				}
				if got := podNames(snapshotOf(t, "all added", s, incr, full)); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("reverse=%v: snapshot pods %v, want %v", reverse, got, tc.want)
				}
			}
		})
	}
}

// TestBuildClusterPoliciesAndPeerNodes pins what ClusterNetworkPolicies
// get of the cluster: every policy, sorted by name, and every node, sorted
// by name, with its labels and each IP address of its status once, sorted
// (hostnames are no addresses; IPv4-mapped IPv6 is IPv4).
func TestBuildClusterPoliciesAndPeerNodes(t *testing.T) {
	n1 := node("n1", nil, "192.168.0.1")
	n1.Labels = map[string]string{"zone": "a"}
	n1.Status.Addresses = append(n1.Status.Addresses, nodeAddrList(corev1.NodeHostName, "n1.example",
		corev1.NodeExternalIP, "203.0.113.1", corev1.NodeInternalIP, "fd00::1", corev1.NodeExternalIP, "192.168.0.1",
		corev1.NodeInternalDNS, "::ffff:10.0.0.1")...)
	n0 := node("n0", nil)
	o := Objects{
		Nodes:           []*corev1.Node{n1, n0},
		ClusterPolicies: []*cnpv1beta1.ClusterNetworkPolicy{cnp("b", cnpv1beta1.AdminTier, 1, 1), cnp("a", cnpv1beta1.BaselineTier, 9, 1)},
	}
	s := Build("n1", nil, o)
	want := []policy.PeerNode{
		{Name: "n0"},
		{Name: "n1", Labels: map[string]string{"zone": "a"}, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1"),
			netip.MustParseAddr("192.168.0.1"), netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("fd00::1")}},
	}
	if !reflect.DeepEqual(s.Nodes, want) {
		t.Errorf("nodes %+v, want %+v", s.Nodes, want)
	}
	if len(s.ClusterPolicies) != 2 || s.ClusterPolicies[0].Name != "a" || s.ClusterPolicies[1].Name != "b" {
		t.Errorf("cluster policies %v, want a, b", s.ClusterPolicies)
	}
	if want := []netip.Addr{netip.MustParseAddr("192.168.0.1"), netip.MustParseAddr("203.0.113.1"),
		netip.MustParseAddr("fd00::1"), netip.MustParseAddr("192.168.0.1")}; !reflect.DeepEqual(s.Node.Addrs, want) {
		t.Errorf("local node addresses %v, want its InternalIP and ExternalIP in order, as before: %v", s.Node.Addrs, want)
	}
}

// TestViewKeepsPeerNodesThroughHeartbeats: a node update that changes
// nothing its peers see (a status heartbeat replaces the object) leaves
// the snapshot's node slice as it was, so the compiler sees no change;
// a label change replaces it.
func TestViewKeepsPeerNodesThroughHeartbeats(t *testing.T) {
	s, incr, full := newStore(), NewView(), NewView()
	s.putNode(testNode("n1", "10.1.0.0/24", "192.168.0.1"))
	s.putNode(testNode("n2", "10.1.1.0/24", "192.168.0.2"))
	before := snapshotOf(t, "nodes", s, incr, full)
	first := incr.Snapshot("n1", cidrs).Nodes
	s.putNode(withNode(s.getNode("n2"), func(n *corev1.Node) { n.ResourceVersion = "7" }))
	snapshotOf(t, "heartbeat", s, incr, full)
	if got := incr.Snapshot("n1", cidrs).Nodes; &got[0] != &first[0] {
		t.Error("a heartbeat replaced the snapshot's node slice")
	}
	s.putNode(withNode(s.getNode("n2"), func(n *corev1.Node) { n.Labels = map[string]string{"zone": "b"} }))
	after := snapshotOf(t, "relabel", s, incr, full)
	if got := incr.Snapshot("n1", cidrs).Nodes; &got[0] == &first[0] || reflect.DeepEqual(before.Nodes, after.Nodes) {
		t.Error("a label change kept the snapshot's node slice")
	}
}
