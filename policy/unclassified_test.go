package policy

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/nsgroup"
	"github.com/weir-cni/weir/ruleset"
)

// TestClassifiedPodLeavesTheFallback follows one pod of namespace shop
// (default deny ingress for app=db) through an incremental Compiler: while
// the agent does not know it, its namespace's policy denies it whatever its
// labels; once classified, its own verdict holds (open for app=web, the
// policy's for app=db); a namespace losing its last policy opens again.
func TestClassifiedPodLeavesTheFallback(t *testing.T) {
	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-closed"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	peer := Pod{Namespace: "dev", Name: "tool", Node: "n1", IPs: []netip.Addr{netip.MustParseAddr("10.0.1.30")}}
	pod := Pod{Namespace: "shop", Name: "new", Node: "n1", IPs: []netip.Addr{netip.MustParseAddr("10.0.1.99")}}
	snap := func(policies []*networkingv1.NetworkPolicy, labels map[string]string, known bool) Snapshot {
		s := Snapshot{Node: Node{Name: "n1", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}},
			Namespaces: []Namespace{{Name: "shop"}, {Name: "dev"}}, Pods: []Pod{peer}, Policies: policies}
		if known {
			p := pod
			p.Labels = labels
			s.Pods = append(s.Pods, p)
		}
		return s
	}
	pkt := ruleset.Packet{Src: peer.IPs[0], Dst: pod.IPs[0], Proto: ruleset.ProtoTCP, DPort: 80,
		InIface: "weir0000000001", InGroup: nsgroup.Of("dev"), OutIface: "weir0000000002", OutGroup: nsgroup.Of("shop")}
	steps := []struct {
		name    string
		s       Snapshot
		want    ruleset.VerdictKind
		counter string // the counter the drop counts into
	}{
		{"unknown pod of a namespace with an ingress policy is denied", snap([]*networkingv1.NetworkPolicy{deny}, nil, false), ruleset.VerdictDrop, CounterUnclassifiedIngress},
		{"classified pod the policy does not select is open", snap([]*networkingv1.NetworkPolicy{deny}, map[string]string{"app": "web"}, true), ruleset.VerdictAccept, ""},
		{"classified pod the policy selects takes the policy's verdict", snap([]*networkingv1.NetworkPolicy{deny}, map[string]string{"app": "db"}, true), ruleset.VerdictDrop, counterDeniedIn},
		{"pod the agent forgets is denied again", snap([]*networkingv1.NetworkPolicy{deny}, nil, false), ruleset.VerdictDrop, CounterUnclassifiedIngress},
		{"namespace without policy leaves an unknown pod open", snap(nil, nil, false), ruleset.VerdictAccept, ""},
	}
	x := NewCompiler()
	for _, st := range steps {
		r := x.Compile(st.s)
		if full := Compile(st.s); full.String() != r.String() {
			t.Fatalf("%s: incremental ruleset differs from Compile", st.name)
		}
		v, reasons := ruleset.Trace(r, pkt)
		if v != st.want {
			t.Errorf("%s: got %v, want %v\n%s", st.name, v, st.want, ruleset.JoinSteps(reasons, "\n"))
		}
		if st.counter != "" && !slices.ContainsFunc(reasons, func(s ruleset.Step) bool { return s.Rule.Counter == st.counter }) {
			t.Errorf("%s: drop not counted into %s\n%s", st.name, st.counter, ruleset.JoinSteps(reasons, "\n"))
		}
	}
}

// TestIsolatingGroups pins which policies put their namespace's group in
// which set: any policy of the direction, whatever it selects and whether
// it compiles, by its defaulted policyTypes.
func TestIsolatingGroups(t *testing.T) {
	pol := func(ns string, spec networkingv1.NetworkPolicySpec) *policyState {
		return &policyState{pol: &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}, Spec: spec}}
	}
	bad := metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}
	in, eg := isolatingGroups([]*policyState{
		pol("a", networkingv1.NetworkPolicySpec{}),                                                   // defaults to Ingress
		pol("b", networkingv1.NetworkPolicySpec{Egress: []networkingv1.NetworkPolicyEgressRule{{}}}), // Ingress and Egress
		pol("c", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}}),
		pol("d", networkingv1.NetworkPolicySpec{PodSelector: bad, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}}),
		pol("e", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{"Sideways"}}), // isolates nothing
		pol("a", networkingv1.NetworkPolicySpec{}),                                                   // a second policy of a: one element
	})
	groups := func(es []ruleset.Elem) []uint32 {
		var out []uint32
		for _, e := range es {
			out = append(out, binary.BigEndian.Uint32([]byte(e.Key[0].From)))
		}
		return out
	}
	sorted := func(ns ...string) []uint32 {
		var out []uint32
		for _, n := range ns {
			out = append(out, nsgroup.Of(n))
		}
		slices.Sort(out)
		return out
	}
	if got, want := groups(in), sorted("a", "b"); !slices.Equal(got, want) {
		t.Errorf("ingress groups %v, want %v", got, want)
	}
	if got, want := groups(eg), sorted("b", "c", "d"); !slices.Equal(got, want) {
		t.Errorf("egress groups %v, want %v", got, want)
	}
}
