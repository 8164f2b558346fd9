package policy_test

import (
	"fmt"
	"reflect"
	"runtime"
	"testing"

	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/policy"
)

// TestParallelCompileMatchesOneCPU compiles the dense cluster and random
// snapshots with the policies compiled on one goroutine (GOMAXPROCS 1) and
// on four: the rulesets and the caches the Compilers keep must be the same.
// Run with -race, it checks that the policies compiled at once share no
// state unguarded.
func TestParallelCompileMatchesOneCPU(t *testing.T) {
	snaps := map[string]policy.Snapshot{"dense": synth.Cluster(synth.Dense)}
	for seed := int64(1); seed <= 3; seed++ {
		snaps[fmt.Sprint("random", seed)] = synth.NewRandom(seed, policy.MaxInlinePorts).Snapshot()
	}
	compile := func(procs int, s policy.Snapshot) (string, []string) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		x := policy.NewCompiler()
		return x.Compile(s).String(), policy.CacheKeys(x)
	}
	for name, s := range snaps {
		t.Run(name, func(t *testing.T) {
			one, oneKeys := compile(1, s)
			four, fourKeys := compile(4, s)
			if one != four {
				t.Fatalf("compiled on four CPUs, the ruleset differs:\n%s", textdiff.Lines(one, four))
			}
			if !reflect.DeepEqual(oneKeys, fourKeys) {
				t.Fatalf("compiled on four CPUs, the caches differ:\n%v\n%v", oneKeys, fourKeys)
			}
		})
	}
}
