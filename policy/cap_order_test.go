package policy

import (
	"net/netip"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func capOrderPod(ns, name, node string, labels map[string]string, ips ...string) Pod {
	p := Pod{Namespace: ns, Name: name, Node: node, Labels: labels}
	for _, ip := range ips {
		p.IPs = append(p.IPs, netip.MustParseAddr(ip))
	}
	return p
}

func capOrderPolicy(name string, extraBlock bool) *networkingv1.NetworkPolicy {
	peers := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}}
	rules := []networkingv1.NetworkPolicyIngressRule{{From: peers}}
	if extraBlock {
		rules = append(rules, networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.9.0.0/16"}}}})
	}
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "srv"}},
			Ingress:     rules,
		},
	}
}

// A policy is charged the same for a group whether it builds it or finds
// it built by another policy of the same call: its bound. When a group
// found in the call's memo was charged its element count instead, whether
// p2 fit its cap depended on which policy built the empty peers6 group
// first (map order, and the parallel compile's scheduling), and Compile of
// one snapshot dropped p2 in some runs only.
func TestCapChargeIndependentOfOrder(t *testing.T) {
	defer func(old int) { elementCap = old }(elementCap)
	elementCap = 6
	s := Snapshot{
		Node:       Node{Name: "n1", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.100"), netip.MustParseAddr("fd00::100")}},
		Namespaces: []Namespace{{Name: "a"}},
		Pods: []Pod{
			capOrderPod("a", "srv", "n1", map[string]string{"role": "srv"}, "10.0.0.1"),
			capOrderPod("a", "x1", "n2", map[string]string{"app": "x"}, "10.0.1.1"),
			capOrderPod("a", "x2", "n2", map[string]string{"app": "x"}, "10.0.1.2"),
			capOrderPod("a", "x3", "n2", map[string]string{"app": "x"}, "10.0.1.3"),
		},
		Policies: []*networkingv1.NetworkPolicy{capOrderPolicy("p1", false), capOrderPolicy("p2", true)},
	}
	seen := map[int]int{}
	for range 200 {
		r := Compile(s)
		seen[len(r.Problems)]++
	}
	t.Logf("problem counts over 200 Compiles: %v", seen)
	if len(seen) > 1 {
		t.Errorf("Compile of one snapshot is not deterministic: %v", seen)
	}
}
