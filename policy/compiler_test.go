package policy_test

import (
	"fmt"
	"net/netip"
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
				mustMatch(t, fmt.Sprintf("step %d (%s)", step, what), got, want)
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

// mustMatch fails the test unless got, a Compiler's output, is want, a
// fresh Compile of the same snapshot, but for the sizes a Compiler keeps.
func mustMatch(t *testing.T, at string, got, want ruleset.Ruleset) {
	t.Helper()
	kept, err := withSizesOf(got, want)
	if err != nil {
		t.Fatalf("%s: %v", at, err)
	}
	if kept.String() != want.String() {
		t.Fatalf("%s: text differs from Compile:\n%s", at, textdiff.Lines(want.String(), kept.String()))
	}
	if !reflect.DeepEqual(kept, want) {
		t.Fatalf("%s: ruleset differs from Compile (text equal)", at)
	}
}

// withSizesOf returns got with the set sizes of want, a fresh Compile of
// the same snapshot, once it checked that each size got declares
// otherwise is one a Compiler keeps (see shardSize): larger than
// Compile's, with the elements filling more than a quarter of it.
func withSizesOf(got, want ruleset.Ruleset) (ruleset.Ruleset, error) {
	sets := slices.Clone(got.Sets)
	for i := range sets {
		s := &sets[i]
		w, ok := want.Set(s.Name)
		if !ok || w.Size == s.Size {
			continue
		}
		if s.Size < w.Size || uint64(len(s.Elems)) <= uint64(s.Size)/4 {
			return got, fmt.Errorf("set %s: size %d for %d elements, Compile's %d", s.Name, s.Size, len(s.Elems), w.Size)
		}
		s.Size = w.Size
	}
	got.Sets = sets
	return got, nil
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

// podDelta is the PodDelta of next relative to prev: the pods whose
// content differs, added or removed (a pod listed twice counts with its
// last content, at its last index).
func podDelta(prev, next policy.Snapshot) *policy.PodDelta {
	last := func(pods []policy.Pod) map[[2]string]int {
		m := make(map[[2]string]int, len(pods))
		for i, p := range pods {
			m[[2]string{p.Namespace, p.Name}] = i
		}
		return m
	}
	was, is := last(prev.Pods), last(next.Pods)
	d := &policy.PodDelta{Base: prev.Seq}
	for k, i := range is {
		if j, ok := was[k]; !ok || !reflect.DeepEqual(prev.Pods[j], next.Pods[i]) {
			d.Changed = append(d.Changed, policy.PodChange{Namespace: k[0], Name: k[1], Index: i})
		}
	}
	for k := range was {
		if _, ok := is[k]; !ok {
			d.Changed = append(d.Changed, policy.PodChange{Namespace: k[0], Name: k[1], Index: -1})
		}
	}
	return d
}

// TestCompilerPodDeltaMatchesCompile is TestCompilerMatchesCompile with
// every snapshot carrying the PodDelta of its changes: the Compiler that
// trusts it must give Compile's ruleset, and must trust it whenever
// neither snapshot holds a pod twice (then the pod count differs from the
// delta's account, and it compares every pod).
func TestCompilerPodDeltaMatchesCompile(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			g := synth.NewRandom(seed, policy.MaxInlinePorts)
			s := g.Snapshot()
			s.Seq = 1
			x := policy.NewCompiler()
			x.Compile(s)
			used, unique := 0, 0
			for step := 2; step <= 200; step++ {
				prev := s
				var what string
				s, what = g.Mutate(s)
				s.Seq, s.PodDelta = uint64(step), podDelta(prev, s)
				if policy.PodDeltaUsable(x, s) {
					used++
				}
				if !twice(prev.Pods) && !twice(s.Pods) {
					unique++
				}
				got, want := x.Compile(s), policy.Compile(s)
				mustMatch(t, fmt.Sprintf("step %d (%s)", step, what), got, want)
			}
			if used != unique || used == 0 {
				t.Errorf("the Compiler took %d deltas, want %d", used, unique)
			}
		})
	}
}

// twice tells whether pods holds a pod twice.
func twice(pods []policy.Pod) bool {
	seen := make(map[[2]string]bool, len(pods))
	for _, p := range pods {
		k := [2]string{p.Namespace, p.Name}
		if seen[k] {
			return true
		}
		seen[k] = true
	}
	return false
}

// TestCompilerPodDeltaChecks gives the Compiler deltas that omit a pod
// change, each with a flaw it can see: it must compare every pod instead,
// and see the change. The last case is a flawless delta that omits the
// change: trusted, it hides the change, which tells that the Compiler
// does use a delta it accepts.
func TestCompilerPodDeltaChecks(t *testing.T) {
	base := synth.Cluster(synth.Options{Pods: 300, Policies: 30, Local: 1})
	base.Seq = 7
	relabeled := func(s policy.Snapshot) policy.Snapshot {
		s.Pods = slices.Clone(s.Pods)
		s.Pods[0].Labels = map[string]string{"app": "changed"}
		return s
	}
	added := func(s policy.Snapshot) policy.Snapshot {
		s.Pods = append(slices.Clone(s.Pods), policy.Pod{Namespace: "ns1", Name: "new", Node: s.Node.Name,
			Labels: map[string]string{"app": "app1"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.99.1")}})
		return s
	}
	other := func(s policy.Snapshot) policy.PodChange { // a pod that did not change, at its index
		return policy.PodChange{Namespace: s.Pods[5].Namespace, Name: s.Pods[5].Name, Index: 5}
	}
	cases := []struct {
		name   string
		change func(policy.Snapshot) policy.Snapshot
		delta  func(policy.Snapshot) *policy.PodDelta
		trust  bool
	}{
		{"stale base", relabeled, func(s policy.Snapshot) *policy.PodDelta { return &policy.PodDelta{Base: 6} }, false},
		{"no base", relabeled, func(s policy.Snapshot) *policy.PodDelta { return &policy.PodDelta{} }, false},
		{"index out of range", relabeled, func(s policy.Snapshot) *policy.PodDelta {
			c := other(s)
			c.Index = len(s.Pods)
			return &policy.PodDelta{Base: 7, Changed: []policy.PodChange{c}}
		}, false},
		{"wrong pod at index", relabeled, func(s policy.Snapshot) *policy.PodDelta {
			c := other(s)
			c.Index = 6
			return &policy.PodDelta{Base: 7, Changed: []policy.PodChange{c}}
		}, false},
		{"pod listed twice", relabeled, func(s policy.Snapshot) *policy.PodDelta {
			return &policy.PodDelta{Base: 7, Changed: []policy.PodChange{other(s), other(s)}}
		}, false},
		{"pod count", added, func(s policy.Snapshot) *policy.PodDelta { return &policy.PodDelta{Base: 7} }, false},
		{"removal of a pod that stays", relabeled, func(s policy.Snapshot) *policy.PodDelta {
			c := other(s)
			c.Index = -1
			return &policy.PodDelta{Base: 7, Changed: []policy.PodChange{c}}
		}, false},
		{"flawless but incomplete", relabeled, func(s policy.Snapshot) *policy.PodDelta {
			return &policy.PodDelta{Base: 7, Changed: []policy.PodChange{other(s)}}
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := policy.NewCompiler()
			before := x.Compile(base).String()
			s := tc.change(base)
			s.Seq, s.PodDelta = 8, tc.delta(s)
			want := policy.Compile(s).String()
			if want == before {
				t.Fatal("the change does not show in the ruleset")
			}
			got := x.Compile(s).String()
			switch {
			case tc.trust && got != before:
				t.Errorf("the Compiler did not trust the delta:\n%s", textdiff.Lines(before, got))
			case !tc.trust && got != want:
				t.Errorf("the Compiler trusted a flawed delta:\n%s", textdiff.Lines(want, got))
			}
		})
	}
}
