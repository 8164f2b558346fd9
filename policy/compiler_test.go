package policy_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// TestCompilerMatchesCompile runs random sequences of snapshot changes
// through one Compiler and checks every result against a fresh Compile of
// the same snapshot: the incremental path must never drift.
func TestCompilerMatchesCompile(t *testing.T) {
	withDNS := 0 // steps whose ruleset has domainNames rules
	defer func() {
		if withDNS == 0 && !t.Failed() {
			t.Error("no random step had a domainNames rule")
		}
	}()
	for seed := int64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			g := synth.NewRandom(seed, policy.MaxInlinePorts)
			s := g.Snapshot()
			x := policy.NewCompiler()
			var prev ruleset.Ruleset
			for step := 0; step < 200; step++ {
				what := "initial"
				if step > 0 {
					s, what = g.Mutate(s)
				}
				fresh := policy.NewCompiler()
				got, want := x.Compile(s), fresh.Compile(s)
				if got.String() != want.String() {
					t.Fatalf("step %d (%s): text differs from Compile:\n%s", step, what, textdiff.Lines(want.String(), got.String()))
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("step %d (%s): ruleset differs from Compile (text equal)", step, what)
				}
				if len(got.DNS) > 0 {
					withDNS++
				}
				if a, b := policy.CacheKeys(x), policy.CacheKeys(fresh); !reflect.DeepEqual(a, b) {
					t.Fatalf("step %d (%s): cached selectors differ from a fresh Compiler's (leak?):\n%v\n%v", step, what, a, b)
				}
				if ch := ruleset.Diff(prev, got); !ch.Full && policy.Patch(prev, ch).String() != got.String() {
					t.Fatalf("step %d (%s): Diff does not turn the previous ruleset into this one", step, what)
				}
				prev = got
			}
		})
	}
}

// TestCompilerKeepsOutputsIntact checks that a later Compile does not
// modify the ruleset an earlier one returned (the applier keeps it to
// diff against).
func TestCompilerKeepsOutputsIntact(t *testing.T) {
	g := synth.NewRandom(42, policy.MaxInlinePorts)
	s := g.Snapshot()
	x := policy.NewCompiler()
	prev := x.Compile(s)
	prevText := prev.String()
	for step := 0; step < 200; step++ {
		s, _ = g.Mutate(s)
		r := x.Compile(s)
		if prev.String() != prevText {
			t.Fatalf("step %d: Compile modified the previous ruleset", step)
		}
		prev, prevText = r, r.String()
	}
}

// TestDiffIgnoresOrder diffs rulesets whose sets and chains are not sorted
// by name (not as Compile makes them) and expects what the sorted ones give.
func TestDiffIgnoresOrder(t *testing.T) {
	g := synth.NewRandom(7, policy.MaxInlinePorts)
	s := g.Snapshot()
	for step := 0; step < 50; step++ {
		old := policy.Compile(s)
		s, _ = g.Mutate(s)
		new := policy.Compile(s)
		want := ruleset.Diff(old, new)
		shuffled := func(r ruleset.Ruleset) ruleset.Ruleset {
			r.Sets, r.Chains = slices.Clone(r.Sets), slices.Clone(r.Chains)
			g.Rand().Shuffle(len(r.Sets), func(i, j int) { r.Sets[i], r.Sets[j] = r.Sets[j], r.Sets[i] })
			g.Rand().Shuffle(len(r.Chains), func(i, j int) { r.Chains[i], r.Chains[j] = r.Chains[j], r.Chains[i] })
			return r
		}
		if got := ruleset.Diff(shuffled(old), shuffled(new)); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: diff of shuffled rulesets differs:\n%s\n%s", step, got, want)
		}
	}
}
