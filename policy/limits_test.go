package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/weir-cni/weir/ruleset"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		if s, _ := r.Set(name); len(s.Elems) != 0 {
			t.Errorf("set %s holds %d elements of a policy not applied", name, len(s.Elems))
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
