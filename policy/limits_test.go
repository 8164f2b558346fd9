package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// withAllowAll adds a second policy selecting srv that allows TCP 1001
// from anywhere: a capped policy must not take it down (policies add up).
func withAllowAll(s Snapshot) Snapshot {
	s.Policies = append(s.Policies, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "allow-1001"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "srv"}},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: wideRules(1, 1, 0)[0].Ports}},
		},
	})
	return s
}

// checkDropped checks that policy default/wide is reported and not
// applied at all, failing closed: srv stays isolated, the wide policy's
// chain is empty and its groups are gone, and only the other policy's
// port is open.
func checkDropped(t *testing.T, r ruleset.Ruleset, problem string) {
	t.Helper()
	if len(r.Problems) != 1 || !strings.Contains(r.Problems[0], problem) || !strings.Contains(r.Problems[0], "not applied") {
		t.Fatalf("problems %q, want one about %q", r.Problems, problem)
	}
	ch, ok := r.Chain(policyChainName(dirIngress, "default/wide"))
	if !ok || len(ch.Rules) != 0 {
		t.Errorf("policy chain present=%v with %d rules, want present and empty", ok, len(ch.Rules))
	}
	for _, name := range []string{setPorts, setPeers4, setPeers6} {
		if n := sharedElemCount(r, name); n != 0 {
			t.Errorf("set %s holds %d elements of a policy not applied", name, n)
		}
	}
	srv, peer := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.1.0.0") // pod peer0
	for port, want := range map[uint16]ruleset.VerdictKind{1001: ruleset.VerdictAccept, 1003: ruleset.VerdictDrop} {
		if got, why := ruleset.Trace(r, ruleset.Packet{Src: peer, Dst: srv, Proto: ruleset.ProtoTCP, DPort: port}); got != want {
			t.Errorf("peer0 to srv port %d: %v, want %v\n%s", port, got, want, ruleset.JoinSteps(why, "\n"))
		}
	}
}

// TestPolicyOverItemCapIsNotApplied: a policy of more rules, peers and
// ports than MaxPolicyItems is checked before anything is compiled and
// dropped whole.
func TestPolicyOverItemCapIsNotApplied(t *testing.T) {
	s := withAllowAll(wideSnapshot(2, MaxPolicyItems/4, MaxPolicyItems/4))
	r := Compile(s)
	checkDropped(t, r, fmt.Sprintf("more than the %d", MaxPolicyItems))

	// Under the cap, the same shape is applied.
	s = withAllowAll(wideSnapshot(1, MaxPolicyItems/4, MaxPolicyItems/4))
	if r := Compile(s); len(r.Problems) != 0 {
		t.Fatalf("problems under the cap: %v", r.Problems)
	}
}

// TestPolicyOverElementCapIsNotApplied: a policy whose groups would hold
// more elements than the cap is dropped whole, and comes back through an
// incremental Compiler when pod churn brings it under the cap.
func TestPolicyOverElementCapIsNotApplied(t *testing.T) {
	defer func(old int) { elementCap = old }(elementCap)
	elementCap = 100
	// Two rules of 30 ports and 30 peers each: 30 port elements and 30 +
	// 30 peer addresses, per rule differently, so 60 + 120 > 100.
	s := withAllowAll(wideSnapshot(2, 30, 30))
	x := NewCompiler()
	r := x.Compile(s)
	checkDropped(t, r, "more than 100 set elements")

	// Fewer peer pods: 60 port elements and 4 × ≤ 10 addresses fit.
	small := s
	small.Pods = s.Pods[:11]
	r = x.Compile(small)
	if len(r.Problems) != 0 {
		t.Fatalf("problems under the cap: %v", r.Problems)
	}
	if want := Compile(small); r.String() != want.String() {
		t.Errorf("incremental Compile differs from Compile")
	}
	if got, _ := ruleset.Trace(r, ruleset.Packet{Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.0.0.1"), Proto: ruleset.ProtoTCP, DPort: 1003}); got != ruleset.VerdictAccept {
		t.Errorf("peer1 to srv port 1003 under the cap: %v, want accept", got)
	}
	r = x.Compile(s)
	checkDropped(t, r, "more than 100 set elements")
}

// overCapCluster is wideSnapshot's srv and peers under an Admin
// ClusterNetworkPolicy whose ingress accepts peer0, then denies from every
// peer pod, then accepts everything; and whose egress passes 10.9.0.0/16
// to NetworkPolicy and accepts every pod. A NetworkPolicy denies srv's
// egress.
func overCapCluster(peers int) Snapshot {
	s := wideSnapshot(1, 1, peers)
	srv := metav1.LabelSelector{MatchLabels: map[string]string{"app": "srv"}}
	s.Policies = []*networkingv1.NetworkPolicy{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "deny-egress"},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: srv, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
	}}
	pod := func(app string) cnp.ClusterNetworkPolicyIngressPeer {
		return cnp.ClusterNetworkPolicyIngressPeer{Pods: &cnp.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}}
	}
	var all []cnp.ClusterNetworkPolicyIngressPeer
	for i := range peers {
		all = append(all, pod(fmt.Sprint("peer", i)))
	}
	s.ClusterPolicies = []*cnp.ClusterNetworkPolicy{{
		ObjectMeta: metav1.ObjectMeta{Name: "wide"},
		Spec: cnp.ClusterNetworkPolicySpec{
			Tier: cnp.AdminTier, Priority: 1,
			Subject: cnp.ClusterNetworkPolicySubject{Pods: &cnp.NamespacedPod{PodSelector: srv}},
			Ingress: []cnp.ClusterNetworkPolicyIngressRule{
				{Action: cnp.ClusterNetworkPolicyRuleActionAccept, From: []cnp.ClusterNetworkPolicyIngressPeer{pod("peer0")}},
				{Action: cnp.ClusterNetworkPolicyRuleActionDeny, From: all},
				{Action: cnp.ClusterNetworkPolicyRuleActionAccept, From: []cnp.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}},
			},
			Egress: []cnp.ClusterNetworkPolicyEgressRule{
				{Action: cnp.ClusterNetworkPolicyRuleActionPass, To: []cnp.ClusterNetworkPolicyEgressPeer{{Networks: []cnp.CIDR{"10.9.0.0/16"}}}},
				{Action: cnp.ClusterNetworkPolicyRuleActionAccept, To: []cnp.ClusterNetworkPolicyEgressPeer{{Namespaces: &metav1.LabelSelector{}}}},
			},
		},
	}}
	return s
}

// checkVerdicts traces TCP port 80 packets between the addresses.
func checkVerdicts(t *testing.T, r ruleset.Ruleset, want map[[2]string]ruleset.VerdictKind) {
	t.Helper()
	for ends, v := range want {
		p := ruleset.Packet{Src: netip.MustParseAddr(ends[0]), Dst: netip.MustParseAddr(ends[1]), Proto: ruleset.ProtoTCP, DPort: 80}
		if got, why := ruleset.Trace(r, p); got != v {
			t.Errorf("%s -> %s: %v, want %v\n%s", ends[0], ends[1], got, v, ruleset.JoinSteps(why, "\n"))
		}
	}
}

// TestClusterPolicyOverElementCapFailsClosed: a ClusterNetworkPolicy over
// the element cap is never applied in part and never fails open: its
// Accept rules allow nothing and its first Deny or Pass rule of each
// direction acts on every peer and port. Before, every rule went, so its
// Deny let everything through.
func TestClusterPolicyOverElementCapFailsClosed(t *testing.T) {
	const srv, peer0, peer5, outside = "10.0.0.1", "10.1.0.0", "10.1.0.5", "10.9.0.1"
	r := Compile(overCapCluster(40))
	if len(r.Problems) != 0 {
		t.Fatalf("problems under the cap: %v", r.Problems)
	}
	checkVerdicts(t, r, map[[2]string]ruleset.VerdictKind{
		{peer0, srv}:   ruleset.VerdictAccept, // rule 0
		{peer5, srv}:   ruleset.VerdictDrop,   // rule 1
		{srv, peer5}:   ruleset.VerdictAccept, // egress rule 1 over the NetworkPolicy
		{srv, outside}: ruleset.VerdictDrop,   // passed to the NetworkPolicy
	})

	defer func(old int) { elementCap = old }(elementCap)
	elementCap = 50 // rule 1 looks up 80 addresses
	x := NewCompiler()
	r = x.Compile(overCapCluster(40))
	if len(r.Problems) != 1 || !strings.Contains(r.Problems[0], "more than 50 set elements") ||
		!strings.Contains(r.Problems[0], "first Deny or Pass") {
		t.Fatalf("problems %q", r.Problems)
	}
	checkVerdicts(t, r, map[[2]string]ruleset.VerdictKind{
		{peer0, srv}:   ruleset.VerdictDrop, // rule 1 on every peer: rule 0 allows nothing
		{peer5, srv}:   ruleset.VerdictDrop,
		{srv, peer5}:   ruleset.VerdictDrop, // egress rule 0 passes everything to the NetworkPolicy
		{srv, outside}: ruleset.VerdictDrop,
	})
	for _, name := range []string{setPeers4, setPeers6, setBlocks4} {
		if n := sharedElemCount(r, name); n != 0 {
			t.Errorf("set %s holds %d elements of a policy not applied", name, n)
		}
	}
	if want := Compile(overCapCluster(40)); r.String() != want.String() {
		t.Errorf("incremental Compile differs from Compile")
	}
}

// TestClusterPolicyOverItemCapFailsClosed: a ClusterNetworkPolicy of more
// rules, peers, networks and ports than MaxPolicyItems is not compiled;
// its first Deny acts on everything.
func TestClusterPolicyOverItemCapFailsClosed(t *testing.T) {
	s := overCapCluster(2)
	p := s.ClusterPolicies[0]
	var nets []cnp.CIDR
	for i := range 100 {
		nets = append(nets, cnp.CIDR(fmt.Sprintf("10.8.%d.0/24", i)))
	}
	p.Spec.Ingress = nil
	p.Spec.Egress = nil
	for range MaxPolicyItems / 102 {
		p.Spec.Egress = append(p.Spec.Egress, cnp.ClusterNetworkPolicyEgressRule{Action: cnp.ClusterNetworkPolicyRuleActionDeny,
			To: []cnp.ClusterNetworkPolicyEgressPeer{{Networks: nets}}})
	}
	s.Policies = nil
	if r := Compile(s); len(r.Problems) != 0 {
		t.Fatalf("problems under the cap: %v", r.Problems)
	} else {
		checkVerdicts(t, r, map[[2]string]ruleset.VerdictKind{{"10.0.0.1", "10.1.0.1"}: ruleset.VerdictAccept, {"10.0.0.1", "10.8.3.1"}: ruleset.VerdictDrop})
	}
	p.Spec.Egress = append(p.Spec.Egress, p.Spec.Egress[0])
	r := Compile(s)
	if len(r.Problems) != 1 || !strings.Contains(r.Problems[0], fmt.Sprintf("more than %d rules", MaxPolicyItems)) {
		t.Fatalf("problems %q", r.Problems)
	}
	checkVerdicts(t, r, map[[2]string]ruleset.VerdictKind{{"10.0.0.1", "10.1.0.1"}: ruleset.VerdictDrop, {"10.0.0.1", "10.8.3.1"}: ruleset.VerdictDrop})
}

// TestPeerChurnThroughElementCap grows a policy's peer pods one at a time
// through the element cap, then shrinks them again: a Compiler that only
// lists a policy's peer groups again (refreshPeers) must still count the
// policy's other elements (its 60 ports) and drop it exactly where Compile
// does.
func TestPeerChurnThroughElementCap(t *testing.T) {
	defer func(old int) { elementCap = old }(elementCap)
	elementCap = 100
	s := withAllowAll(wideSnapshot(2, 30, 30))
	x := NewCompiler()
	dropped := 0
	step := func(n int) {
		small := s
		small.Pods = s.Pods[:n]
		got, want := x.Compile(small), Compile(small)
		if got.String() != want.String() {
			t.Fatalf("%d pods: Compiler differs from Compile:\n%s", n, textdiff.Lines(want.String(), got.String()))
		}
		if len(want.Problems) > 0 {
			dropped++
		}
	}
	for n := 2; n <= len(s.Pods); n++ {
		step(n)
	}
	for n := len(s.Pods) - 1; n >= 2; n-- {
		step(n)
	}
	if dropped == 0 || dropped == 2*(len(s.Pods)-1)-1 {
		t.Errorf("the policy was dropped at %d steps: the cap is never or always crossed", dropped)
	}
}

// TestSharedEntryChargedOnce grows the peers of a rule whose two selector
// peers (one podSelector, one namespaceSelector of the policy's own
// namespace with the same podSelector) share one cached result, through
// the element cap: Compile must charge that result once, as a Compiler
// listing the policy's peer group again (refreshPeers) does, and both
// must drop the policy at the same step.
func TestSharedEntryChargedOnce(t *testing.T) {
	defer func(old int) { elementCap = old }(elementCap)
	elementCap = 10
	peer := metav1.LabelSelector{MatchLabels: map[string]string{"role": "peer"}}
	own := metav1.LabelSelector{MatchLabels: map[string]string{labelNamespaceName: "default"}}
	s := Snapshot{
		Node:       Node{Name: "n1", Addrs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}},
		Namespaces: []Namespace{{Name: "default"}},
		Pods: []Pod{{Namespace: "default", Name: "srv", Node: "n1", Labels: map[string]string{"app": "srv"},
			IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}},
		Policies: []*networkingv1.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "twice"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "srv"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
					{PodSelector: &peer}, {NamespaceSelector: &own, PodSelector: &peer},
				}}},
			},
		}},
	}
	for i := range 15 {
		s.Pods = append(s.Pods, Pod{Namespace: "default", Name: fmt.Sprint("peer", i), Node: "n2",
			Labels: map[string]string{"role": "peer"}, IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 0, byte(i)})}})
	}
	x := NewCompiler()
	dropped := 0
	for n := 2; n <= len(s.Pods); n++ {
		small := s
		small.Pods = s.Pods[:n]
		got, want := x.Compile(small), Compile(small)
		if got.String() != want.String() {
			t.Fatalf("%d peers: Compiler differs from Compile:\n%s", n-1, textdiff.Lines(want.String(), got.String()))
		}
		if len(want.Problems) > 0 {
			dropped++
		}
	}
	if want := len(s.Pods) - 1 - elementCap; dropped != want {
		t.Errorf("dropped at %d steps, want %d (the shared result charged once)", dropped, want)
	}
}
