package controller

import (
	"reflect"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/policy"
)

func auditPolicy(ns, name string, sel metav1.LabelSelector, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: types}}
}

func TestAudit(t *testing.T) {
	app := func(v string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchLabels: map[string]string{"app": v}}
	}
	web := policy.Pod{Namespace: "shop", Name: "web", Node: "n1", Labels: map[string]string{"app": "web"}}
	db := policy.Pod{Namespace: "shop", Name: "db", Node: "n2", Labels: map[string]string{"app": "db"}}
	open := func(p policy.Pod, in, eg bool) agentapi.AuditPod {
		return agentapi.AuditPod{Namespace: p.Namespace, Name: p.Name, Node: p.Node, Ingress: in, Egress: eg}
	}
	withEgress := auditPolicy("shop", "egress-rules", app("web"))
	withEgress.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
	cases := []struct {
		name       string
		namespaces []string
		pods       []policy.Pod
		policies   []*networkingv1.NetworkPolicy
		wantNS     []string
		wantPods   []agentapi.AuditPod
	}{
		{"no policy: every namespace and both directions of every pod are open",
			[]string{"shop", "kube-system"}, []policy.Pod{web, db}, nil,
			[]string{"kube-system", "shop"}, []agentapi.AuditPod{open(db, true, true), open(web, true, true)}},
		{"default policyTypes isolate ingress only",
			[]string{"shop"}, []policy.Pod{web, db}, []*networkingv1.NetworkPolicy{auditPolicy("shop", "all", metav1.LabelSelector{})},
			[]string{}, []agentapi.AuditPod{open(db, false, true), open(web, false, true)}},
		{"egress rules default policyTypes to both",
			[]string{"shop"}, []policy.Pod{web}, []*networkingv1.NetworkPolicy{withEgress},
			[]string{}, []agentapi.AuditPod{}},
		{"a policy isolates only the pods it selects, directions add up",
			[]string{"shop"}, []policy.Pod{web, db}, []*networkingv1.NetworkPolicy{
				auditPolicy("shop", "web-in", app("web"), networkingv1.PolicyTypeIngress),
				auditPolicy("shop", "web-out", app("web"), networkingv1.PolicyTypeEgress)},
			[]string{}, []agentapi.AuditPod{open(db, true, true)}},
		{"a policy of another namespace isolates nothing here",
			[]string{"shop", "other"}, []policy.Pod{web}, []*networkingv1.NetworkPolicy{
				auditPolicy("other", "all", metav1.LabelSelector{}, networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)},
			[]string{"shop"}, []agentapi.AuditPod{open(web, true, true)}},
		{"an unparsable podSelector isolates its whole namespace, as the ruleset does",
			[]string{"shop"}, []policy.Pod{web}, []*networkingv1.NetworkPolicy{
				auditPolicy("shop", "bad", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near"}}})},
			[]string{}, []agentapi.AuditPod{open(web, false, true)}},
		{"hostNetwork pods are open whatever selects them",
			[]string{"shop"}, []policy.Pod{{Namespace: "shop", Name: "agent", Node: "n1", HostNetwork: true}},
			[]*networkingv1.NetworkPolicy{auditPolicy("shop", "all", metav1.LabelSelector{}, networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)},
			[]string{}, []agentapi.AuditPod{{Namespace: "shop", Name: "agent", Node: "n1", Ingress: true, Egress: true, HostNetwork: true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := policy.Snapshot{Node: policy.Node{Name: "n1"}, Pods: tc.pods, Policies: tc.policies}
			for _, ns := range tc.namespaces {
				s.Namespaces = append(s.Namespaces, policy.Namespace{Name: ns})
			}
			got := Audit(s)
			want := agentapi.Audit{Node: "n1", Namespaces: tc.wantNS, Pods: tc.wantPods}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			if got.Findings() != (len(tc.wantNS)+len(tc.wantPods) > 0) {
				t.Errorf("Findings() = %v", got.Findings())
			}
		})
	}
}
