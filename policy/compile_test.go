package policy

import (
	"flag"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// loadScenario reads one testdata/compile/*.yaml file.
var loadScenario = fixtures.LoadScenario[Snapshot]

// golden is what a scenario's .nft file holds: the rendered ruleset, then
// the problems as nft comments.
func golden(r ruleset.Ruleset) string {
	var b strings.Builder
	b.WriteString(r.String())
	for _, p := range r.Problems {
		b.WriteString("# problem: " + p + "\n")
	}
	return b.String()
}

func scenarios(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/compile/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	return files
}

// TestCompileGolden pins the whole ruleset of every scenario to reviewed text.
func TestCompileGolden(t *testing.T) {
	for _, file := range scenarios(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			s := loadScenario(t, file)
			got := golden(Compile(s.Snapshot))
			textdiff.Golden(t, strings.TrimSuffix(file, ".yaml")+".nft", got, *update)
		})
	}
}

// TestTraceVerdicts walks every scenario's packets through its ruleset.
func TestTraceVerdicts(t *testing.T) {
	for _, file := range scenarios(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		s := loadScenario(t, file)
		r := Compile(s.Snapshot)
		if len(s.Traces) == 0 {
			t.Errorf("%s: scenario has no traces", name)
		}
		for _, tc := range s.Traces {
			t.Run(name+"/"+tc.Name, func(t *testing.T) {
				v, reasons := ruleset.Trace(r, tc.Packet(t, DefaultPodInterfacePrefix))
				got := fixtures.Outcome(v, reasons)
				if got != tc.Want {
					t.Errorf("%s -> %s %s/%d: got %s, want %s\n%s", tc.Src, tc.Dst, tc.Proto, tc.Port, got, tc.Want, ruleset.JoinSteps(reasons, "\n"))
				}
			})
		}
	}
}

// TestCompileIsDeterministic compiles the same snapshot with its lists
// reversed and expects the same text.
func TestCompileIsDeterministic(t *testing.T) {
	for _, file := range scenarios(t) {
		s := loadScenario(t, file)
		a := Compile(s.Snapshot).String()
		rev := s.Snapshot
		rev.Pods = reversed(rev.Pods)
		rev.Namespaces = reversed(rev.Namespaces)
		rev.Policies = reversed(rev.Policies)
		if b := Compile(rev).String(); a != b {
			t.Errorf("%s: output depends on input order:\n%s", file, textdiff.Lines(a, b))
		}
	}
}

func reversed[T any](in []T) []T {
	out := make([]T, len(in))
	for i, v := range in {
		out[len(in)-1-i] = v
	}
	return out
}

// TestStringWithCounters pins that the rendered counters carry the values
// given (as nft lists them) and zero for the others.
func TestStringWithCounters(t *testing.T) {
	r := Compile(loadScenario(t, "testdata/compile/talk-policies.yaml").Snapshot)
	if len(r.Counters) < 3 {
		t.Fatalf("counters: %v", r.Counters)
	}
	first, second := r.Counters[0].Name, r.Counters[1].Name
	text := r.StringWithCounters(map[string]ruleset.CounterValue{first: {Packets: 7, Bytes: 420}})
	if !strings.Contains(text, "counter "+first+" {\n\t\tpackets 7 bytes 420\n\t}") {
		t.Errorf("counter %s does not show its values:\n%s", first, text)
	}
	if !strings.Contains(text, "counter "+second+" {\n\t\tpackets 0 bytes 0\n\t}") {
		t.Errorf("counter %s without a value does not show zero", second)
	}
	if r.String() != r.StringWithCounters(nil) {
		t.Error("String differs from StringWithCounters(nil)")
	}
}

// TestCountersKeepTheirOwners pins that every counter has an owner, that
// of the rules counting into it (when any does), whole even where the
// counter's name is cut to stay short (a policy name of 253 characters).
// A policy rule's counter points to the owner of one of its rules instead of
// holding a copy: a counter list is copied whenever a policy's counters
// come or go, and each counter is then a name and a pointer.
func TestCountersKeepTheirOwners(t *testing.T) {
	name := strings.Repeat("n", 253)
	s := Snapshot{Node: Node{Name: "n1"}, Pods: []Pod{
		{Namespace: "default", Name: "web", Node: "n1", Labels: map[string]string{"app": "web"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.10")}},
	}}
	err := yaml.Unmarshal([]byte(`[{metadata: {namespace: default, name: `+name+`}, spec: {podSelector: {},
		ingress: [{ports: [{port: 80}]}, {ports: [{port: 81}]}]}}]`), &s.Policies)
	if err != nil {
		t.Fatal(err)
	}
	r := Compile(s)
	owners := map[string][]*ruleset.Owner{}
	for _, ch := range r.Chains {
		for i := range ch.Rules {
			if rule := &ch.Rules[i]; rule.Counter != "" {
				owners[rule.Counter] = append(owners[rule.Counter], &rule.Owner)
			}
		}
	}
	for _, c := range r.Counters {
		if os := owners[c.Name]; c.Owner().Kind == ruleset.OwnerPolicyRule && !slices.Contains(os, c.OwnerRef) {
			t.Errorf("counter %s holds its own owner %+v, not its rules' %+v", c.Name, c.Owner(), *os[0])
		}
	}
	rules := map[int]bool{}
	for _, c := range r.Counters {
		if os := owners[c.Name]; len(os) > 0 && *os[0] != c.Owner() || c.Owner().Kind == ruleset.OwnerNone {
			t.Errorf("counter %s is owned by %+v, its rules by %+v", c.Name, c.Owner(), os)
		}
		if o := c.Owner(); o.Kind == ruleset.OwnerPolicyRule {
			if len(c.Name) >= len(name) || o.Namespace != "default" || o.Policy != name || o.Direction != ruleset.Ingress {
				t.Errorf("counter %s (%d bytes) is owned by %+v", c.Name, len(c.Name), o)
			}
			rules[o.Rule] = true
		}
	}
	if len(rules) != 2 || !rules[0] || !rules[1] {
		t.Errorf("policy rules with a counter: %v, want 0 and 1", rules)
	}
}

// TestCompileSharedAddressIsDeterministic compiles, again and again, two
// local pods of two namespaces that share an address (two running pods
// of one kind both keep it, see snapshot.Build), each isolated by its
// namespace's policy: the pod map's element for the address must not
// depend on the order of a map.
func TestCompileSharedAddressIsDeterministic(t *testing.T) {
	s := Snapshot{Node: Node{Name: "n1"}}
	for _, ns := range []string{"a", "b", "c"} {
		s.Namespaces = append(s.Namespaces, Namespace{Name: ns})
		s.Pods = append(s.Pods, Pod{Namespace: ns, Name: "web", Node: "n1", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.9")}})
		s.Policies = append(s.Policies, fixtures.Policy(t, "{metadata: {namespace: "+ns+", name: deny}, spec: {podSelector: {}}}"))
	}
	want := Compile(s).String()
	for range 30 {
		if got := Compile(s).String(); got != want {
			t.Fatalf("two Compiles of one snapshot differ:\n%s", textdiff.Lines(want, got))
		}
	}
}
