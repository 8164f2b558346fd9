package dataplane

import (
	"fmt"
	"testing"

	"github.com/weir-cni/weir/ruleset"
)

// TestRuleProblemNamesThePolicyRule pins how a problem with a rule is
// attributed: to the policy rule the compiler's comment names, and to none
// when the comment names none; the message quotes the rule either way.
func TestRuleProblemNamesThePolicyRule(t *testing.T) {
	accept := ruleset.Verdict{Kind: ruleset.VerdictAccept}
	cases := []struct {
		name    string
		comment string
		want    Problem
	}{
		{"policy rule", "shop/web egress rule 3", Problem{Policy: "shop/web", Direction: "egress", Rule: 3}},
		{"chain of weir's own", "ingress isolated: no policy allows", Problem{}},
		{"no number", "shop/web egress rule x", Problem{}},
		{"no comment", "", Problem{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ruleset.Rule{Verdict: accept, Comment: tc.comment}
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
