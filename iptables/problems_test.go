package iptables

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/weir-cni/weir/dataplane"
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
