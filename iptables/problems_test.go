package iptables

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// TestApplyReturnsTranslationProblems pins how the parts of a ruleset that
// iptables cannot express reach the agent: Apply returns them, typed and
// once for both families, naming the policy rule when the rule's comment
// does, and the restore input carries none of them (nor the compiler's own
// problems) as comments.
func TestApplyReturnsTranslationProblems(t *testing.T) {
	restored := filepath.Join(t.TempDir(), "restored")
	restore := "#!/bin/sh\nexec /bin/cat >>" + restored + "\n"
	fakeBinaries(t, map[string]string{
		"iptables-legacy": fakeLegacyVersion, "iptables-legacy-restore": restore,
		"ip6tables-legacy": fakeLegacyVersion, "ip6tables-legacy-restore": restore,
	})
	a, err := New(WithMode(ModeLegacy))
	if err != nil {
		t.Fatal(err)
	}
	unknown := ruleset.Rule{Matches: []ruleset.Match{{Kind: ruleset.MatchMark + 100}}, Verdict: ruleset.Verdict{Kind: ruleset.VerdictAccept},
		Owner: ruleset.Owner{Kind: ruleset.OwnerPolicyRule, Namespace: "shop", Policy: "web", Direction: ruleset.Ingress, Rule: 1}}
	rs := ruleset.Ruleset{
		Problems: []string{"the compiler's own problem"},
		Chains: []ruleset.Chain{
			{Name: "forward", Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookForward}, Rules: []ruleset.Rule{
				unknown,
				{Verdict: ruleset.Verdict{Kind: ruleset.VerdictJump, Chain: "missing"}},
			}},
			{Name: "route", Base: &ruleset.Base{Type: "route", Hook: "output"}},
		},
	}
	problems, err := a.Apply(context.Background(), rs)
	if err != nil {
		t.Fatal(err)
	}
	want := []dataplane.Problem{
		{Policy: "shop/web", Direction: "ingress", Rule: 1,
			Message: fmt.Sprintf("rule %q: unknown match kind %d (rule skipped)", unknown.String(), ruleset.MatchMark+100)},
		{Message: "missing chain missing (drops)"},
		{Message: "base chain route: type route hook output has no iptables equivalent (skipped)"},
	}
	if !reflect.DeepEqual(problems, want) {
		t.Errorf("problems:\n got %#v\nwant %#v", problems, want)
	}
	text, err := os.ReadFile(restored)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(text, []byte("COMMIT")) != 2 {
		t.Fatalf("restore input of both families:\n%s", text)
	}
	if bytes.Contains(text, []byte("problem")) {
		t.Errorf("restore input carries problems:\n%s", text)
	}
}

// TestDomainNamesAreReported pins what this backend does with domainNames
// rules: a problem for each (their names allow nothing), and the DNS
// steering's base chains left out and reported, so that DNS queries go to
// their resolver as before.
func TestDomainNamesAreReported(t *testing.T) {
	rs := policy.Compile(loadScenario(t, "../policy/testdata/compile/domain-names.yaml").Snapshot)
	if len(rs.DNS) == 0 {
		t.Fatal("the scenario has no domainNames rule")
	}
	r := build(rs, false)
	for _, d := range rs.DNS {
		want := dataplane.Problem{Policy: d.Owner.Policy, Direction: "egress", Rule: d.Owner.Rule,
			Message: "domainNames are enforced by the nftables backend only; this rule's domainNames allow nothing"}
		if !slices.Contains(r.problems, want) {
			t.Errorf("no problem for %s: %v", d.Owner, r.problems)
		}
	}
	steering := 0
	for _, c := range rs.Chains {
		if c.Base != nil && !placed(c) {
			steering++
			if !slices.ContainsFunc(r.problems, func(p dataplane.Problem) bool { return strings.HasPrefix(p.Message, "base chain "+c.Name+":") }) {
				t.Errorf("base chain %s left out unreported", c.Name)
			}
		}
	}
	if steering != 3 || len(r.problems) != len(rs.DNS)+steering {
		t.Errorf("%d steering chains, problems %v", steering, r.problems)
	}
	if text := r.text(nil); strings.Contains(text, "WEIR-dns") {
		t.Errorf("steering in the rendered chains:\n%s", text)
	}
}
