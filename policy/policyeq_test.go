package policy

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weir-cni/weir/internal/fixtures"
)

// TestSameSpecKnowsEveryField fails when a type sameSpec compares gains a
// field: sameSpec would ignore it, and a Compiler would miss that change.
func TestSameSpecKnowsEveryField(t *testing.T) {
	for _, c := range []struct {
		v      any
		fields int
	}{
		{networkingv1.NetworkPolicySpec{}, 4},
		{networkingv1.NetworkPolicyIngressRule{}, 2},
		{networkingv1.NetworkPolicyEgressRule{}, 2},
		{networkingv1.NetworkPolicyPort{}, 3},
		{networkingv1.NetworkPolicyPeer{}, 3},
		{networkingv1.IPBlock{}, 2},
		{metav1.LabelSelector{}, 2},
		{metav1.LabelSelectorRequirement{}, 3},
		{intstr.IntOrString{}, 3},
	} {
		if n := reflect.TypeOf(c.v).NumField(); n != c.fields {
			t.Errorf("%T has %d fields, sameSpec knows %d: update policyeq.go", c.v, n, c.fields)
		}
	}
}

// TestSameSpecSeesEveryChange changes one field at a time of a policy that
// uses them all.
func TestSameSpecSeesEveryChange(t *testing.T) {
	udp := corev1.ProtocolUDP
	base := func() *networkingv1.NetworkPolicy {
		tcp := corev1.ProtocolTCP
		peers := []networkingv1.NetworkPolicyPeer{
			{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"x", "y"}}}}},
			{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}},
		}
		ports := []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: fixtures.Port(80), EndPort: fixtures.Ptr(int32(90))}}
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "db"}},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: ports, From: peers}},
				Egress:      []networkingv1.NetworkPolicyEgressRule{{Ports: ports, To: peers}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			},
		}
	}
	changes := map[string]func(p *networkingv1.NetworkPolicy){
		"name":              func(p *networkingv1.NetworkPolicy) { p.Name = "q" },
		"podSelector label": func(p *networkingv1.NetworkPolicy) { p.Spec.PodSelector.MatchLabels["role"] = "web" },
		"podSelector expr": func(p *networkingv1.NetworkPolicy) {
			p.Spec.PodSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOpExists}}
		},
		"policyTypes":      func(p *networkingv1.NetworkPolicy) { p.Spec.PolicyTypes = p.Spec.PolicyTypes[:1] },
		"ingress rule":     func(p *networkingv1.NetworkPolicy) { p.Spec.Ingress = append(p.Spec.Ingress, p.Spec.Ingress[0]) },
		"egress rule":      func(p *networkingv1.NetworkPolicy) { p.Spec.Egress = nil },
		"port protocol":    func(p *networkingv1.NetworkPolicy) { p.Spec.Ingress[0].Ports[0].Protocol = &udp },
		"port number":      func(p *networkingv1.NetworkPolicy) { p.Spec.Ingress[0].Ports[0].Port = fixtures.Port(81) },
		"port name":        func(p *networkingv1.NetworkPolicy) { p.Spec.Egress[0].Ports[0].Port = fixtures.Named("80") },
		"endPort":          func(p *networkingv1.NetworkPolicy) { p.Spec.Egress[0].Ports[0].EndPort = nil },
		"peer podSelector": func(p *networkingv1.NetworkPolicy) { p.Spec.Ingress[0].From[0].PodSelector.MatchLabels["app"] = "b" },
		"peer nsSelector value": func(p *networkingv1.NetworkPolicy) {
			p.Spec.Egress[0].To[0].NamespaceSelector.MatchExpressions[0].Values[1] = "z"
		},
		"peer nsSelector op": func(p *networkingv1.NetworkPolicy) {
			p.Spec.Egress[0].To[0].NamespaceSelector.MatchExpressions[0].Operator = metav1.LabelSelectorOpNotIn
		},
		"peer nsSelector gone": func(p *networkingv1.NetworkPolicy) { p.Spec.Ingress[0].From[0].NamespaceSelector = nil },
		"ipBlock cidr":         func(p *networkingv1.NetworkPolicy) { p.Spec.Ingress[0].From[1].IPBlock.CIDR = "10.0.0.0/9" },
		"ipBlock except":       func(p *networkingv1.NetworkPolicy) { p.Spec.Egress[0].To[1].IPBlock.Except = nil },
	}
	a := base()
	if b := a.DeepCopy(); !samePolicy(a, b) {
		t.Fatal("a deep copy differs")
	}
	for name, change := range changes {
		b := base()
		change(b)
		if samePolicy(a, b) {
			t.Errorf("%s: change not seen", name)
		}
	}
}
