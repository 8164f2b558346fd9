package ruleset

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// TestOwnerComments pins the comment each owner renders: the text rules
// carried before owners were data, which the golden files still hold.
func TestOwnerComments(t *testing.T) {
	cases := []struct {
		owner Owner
		want  string
	}{
		{Owner{}, ""},
		{Owner{Kind: OwnerPolicy, Namespace: "ns", Policy: "web", Direction: Ingress}, "ns/web"},
		{Owner{Kind: OwnerPolicyRule, Namespace: "ns", Policy: "web", Direction: Egress, Rule: 2}, "ns/web egress rule 2"},
		{Owner{Kind: OwnerIsolation, Direction: Ingress}, "ingress isolated: no policy allows"},
		{Owner{Kind: OwnerUnclassified, Direction: Egress}, "unclassified pod, egress policy in its namespace"},
		{Owner{Kind: OwnerSpoof}, "source not routed back through its pod interface"},
		{Owner{Kind: OwnerNode, Direction: Egress}, "local pod to its node"},
		{Owner{Kind: OwnerNode, Direction: Ingress}, "node to its local pod"},
		{Owner{Kind: OwnerSelf}, "pod to itself"},
		{Owner{Kind: OwnerMasquerade}, "pods to outside the cluster"},
		{Owner{Kind: OwnerPolicy, Tier: TierAdmin, Policy: "mon", Direction: Ingress}, "Admin cnp/mon"},
		{Owner{Kind: OwnerPolicyRule, Tier: TierBaseline, Policy: "dflt", Direction: Egress, Rule: 1, Action: "Deny"},
			"Baseline cnp/dflt egress rule 1: Deny"},
		{Owner{Kind: OwnerPolicyRule, Tier: TierAdmin, Policy: "mon", Direction: Ingress, RuleName: "only prometheus", Action: "Pass"},
			`Admin cnp/mon ingress rule 0 'only prometheus': Pass`},
		{Owner{Kind: OwnerPolicyRule, Tier: TierAdmin, Policy: "mon", Direction: Ingress, RuleName: `a "b" \ c`, Action: "Deny"},
			`Admin cnp/mon ingress rule 0 'a _b_ _ c': Deny`},
		{Owner{Kind: OwnerPolicyRule, Namespace: "ns", Policy: strings.Repeat("é", 100), Direction: Egress},
			"ns/" + strings.Repeat("é", 62)},
		{Owner{Kind: OwnerPass, Tier: TierAdmin, Direction: Egress}, "egress passed by the Admin tier"},
		{Owner{Kind: OwnerDNSProxy}, "DNS query to the proxy"},
		{Owner{Kind: OwnerDNSProxy, Direction: Egress}, "DNS query to the proxy: egress policy first"},
		{Owner{Kind: OwnerDNSProxyDown}, "DNS proxy not listening: query dropped"},
	}
	for _, tc := range cases {
		if got := tc.owner.String(); got != tc.want {
			t.Errorf("%s owner %+v renders %q, want %q", tc.owner.Kind, tc.owner, got, tc.want)
		}
	}
}

// TestTraceSteps pins the steps of a trace: each rule that matched, with
// its position, owner and verdict (a verdict map's element), the base
// chains fallen through, and the text of each.
func TestTraceSteps(t *testing.T) {
	pod := string(netip.MustParseAddr("10.0.0.1").AsSlice())
	owner := Owner{Kind: OwnerPolicyRule, Namespace: "ns", Policy: "p", Direction: Ingress}
	vmap := Rule{Verdict: Verdict{Kind: VerdictVMap, Map: "pods", Fields: []Field{FieldIPDaddr}}}
	accept := Rule{Matches: []Match{{Kind: MatchPort, Proto: ProtoTCP, PortFrom: 80, PortTo: 80}}, Counter: "c",
		Verdict: Verdict{Kind: VerdictAccept}, Owner: owner}
	r := Ruleset{
		Sets: []Set{{Name: "pods", Key: []Type{TypeIPv4}, Map: true,
			Elems: []Elem{{Key: []Range{{pod, pod}}, Verdict: &Verdict{Kind: VerdictJump, Chain: "pol"}}}}},
		Chains: []Chain{
			{Name: "eg", Base: &Base{Type: "filter", Hook: HookForward}},
			{Name: "in", Base: &Base{Type: "filter", Hook: HookForward, Priority: 1}, Rules: []Rule{
				{Matches: []Match{{Kind: MatchCtState, CtStates: CtEstablished}}, Verdict: Verdict{Kind: VerdictAccept}}, vmap}},
			{Name: "pol", Rules: []Rule{accept}},
		},
	}
	v, steps := Trace(r, Packet{Src: netip.MustParseAddr("10.0.0.2"), Dst: netip.MustParseAddr("10.0.0.1"), Proto: ProtoTCP, DPort: 80})
	want := []Step{
		{Kind: StepPolicy, Chain: "eg", Index: -1, Verdict: Verdict{Kind: VerdictAccept}},
		{Kind: StepRule, Chain: "in", Index: 1, Rule: vmap, Verdict: Verdict{Kind: VerdictJump, Chain: "pol"}},
		{Kind: StepRule, Chain: "pol", Index: 0, Rule: accept, Owner: owner, Verdict: Verdict{Kind: VerdictAccept}},
	}
	if v != VerdictAccept || !reflect.DeepEqual(steps, want) {
		t.Errorf("trace: %v\n%+v\nwant accept\n%+v", v, steps, want)
	}
	text := "eg: policy accept\nin: ip daddr vmap @pods -> jump pol\n" +
		`pol: tcp dport 80 counter name "c" accept comment "ns/p ingress rule 0"`
	if got := JoinSteps(steps, "\n"); got != text {
		t.Errorf("steps read\n%s\nwant\n%s", got, text)
	}
}
