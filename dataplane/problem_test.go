package dataplane

import (
	"fmt"
	"testing"

	"github.com/weir-cni/weir/ruleset"
)

// TestRuleProblemNamesThePolicyRule pins how a problem with a rule is
// attributed: to the policy rule that owns it, and to none when a chain of
// weir's own does; the message quotes the rule either way.
func TestRuleProblemNamesThePolicyRule(t *testing.T) {
	accept := ruleset.Verdict{Kind: ruleset.VerdictAccept}
	cases := []struct {
		name  string
		owner ruleset.Owner
		want  Problem
	}{
		{"policy rule", ruleset.Owner{Kind: ruleset.OwnerPolicyRule, Namespace: "shop", Policy: "web", Direction: ruleset.Egress, Rule: 3},
			Problem{Policy: "shop/web", Direction: "egress", Rule: 3}},
		{"jump to a policy", ruleset.Owner{Kind: ruleset.OwnerPolicy, Namespace: "shop", Policy: "web", Direction: ruleset.Egress}, Problem{}},
		{"chain of weir's own", ruleset.Owner{Kind: ruleset.OwnerIsolation, Direction: ruleset.Ingress}, Problem{}},
		{"no owner", ruleset.Owner{}, Problem{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ruleset.Rule{Verdict: accept, Owner: tc.owner}
			got := RuleProblem(r, "not translated")
			tc.want.Message = fmt.Sprintf("rule %q: not translated", r.String())
			if got != tc.want {
				t.Errorf("RuleProblem = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestProblemString(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{Policy: "shop/web", Direction: "ingress", Rule: 0, Message: "m"}, "shop/web ingress rule 0: m"},
		{Problem{Message: "missing chain x (drops)"}, "missing chain x (drops)"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.p, got, tc.want)
		}
	}
}
