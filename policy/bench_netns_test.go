//go:build integration

package policy_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/nft"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// BenchmarkFullSync: Compile + one-transaction apply of the big cluster
// (100 local pods), replacing the table each round.
func BenchmarkFullSync(b *testing.B) { benchFullOf(b, synth.Cluster(synth.Big)) }

// BenchmarkFullSyncDense is the dense cluster: 1,000 local pods, so every
// policy selects a local pod and is rendered.
func BenchmarkFullSyncDense(b *testing.B) { benchFullOf(b, synth.Cluster(synth.Dense)) }

// tiers is the big cluster with 1,000 ClusterNetworkPolicies of both
// tiers besides its 1,000 NetworkPolicies.
var tiers = synth.Options{Pods: 10000, Policies: 1000, Local: 1, ClusterPolicies: 1000}

// BenchmarkFullSyncTiers is the big cluster with 1,000
// ClusterNetworkPolicies: compare with BenchmarkFullSync of the same run.
func BenchmarkFullSyncTiers(b *testing.B) { benchFullOf(b, synth.Cluster(tiers)) }

// BenchmarkFullSyncWide is the policy of the finding — one rule of 1,000
// ports × 1,000 podSelector peers (dual-stack) — compiled and applied.
func BenchmarkFullSyncWide(b *testing.B) { benchFullOf(b, policy.WideSnapshot(1, 1000, 1000)) }

func benchFullOf(b *testing.B, s policy.Snapshot) {
	path := testkit.NewTestNS(b, "weirt-nft-").Path()
	a, err := nft.NewNetlinkApplier(path)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	var r ruleset.Ruleset
	p := newPhases("compile", "apply")
	b.ReportAllocs() // the compile's and the encoding's, per full sync
	settle()
	for b.Loop() {
		p.start()
		r = policy.Compile(s)
		p.lap()
		if err := a.ApplyFull(context.Background(), r); err != nil {
			b.Fatal(err)
		}
		p.lap()
	}
	p.report(b)
	p.reportTotal(b)
	b.ReportMetric(float64(len(r.Sets)), "sets")
	b.ReportMetric(float64(len(r.Chains)), "chains")
	b.ReportMetric(float64(elemCount(r)), "elems")
}

// settle collects the setup's garbage (the synthetic cluster, the first
// compile and apply: ≈ 100 MB at 50,000 pods) before the timed rounds, as
// the testing package does before each run of a benchmark function: left
// to the GC, the setup's debt was paid in whichever rounds a cycle started
// (a cycle at 50,000 pods costs 150–600 ms of CPU on two CPUs), and a
// change's figure doubled with GOGC (7.5 ms/op at GOGC=800, 13.2 at 100, one
// alternated pair). What the rounds allocate themselves is still collected
// inside them.
func settle() { runtime.GC() }

// benchChange applies base, then alternates one Compiler between two
// snapshots, each round costing Compiler.Compile + Diff + apply of one
// change.
func benchChange(b *testing.B, change func(testing.TB, policy.Snapshot) policy.Snapshot) {
	benchChangeOf(b, synth.Cluster(synth.Big), change)
}

func benchChangeOf(b *testing.B, base policy.Snapshot, change func(testing.TB, policy.Snapshot) policy.Snapshot) {
	path := testkit.NewTestNS(b, "weirt-nft-").Path()
	a, err := nft.NewNetlinkApplier(path)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	snaps := sequenced(b, base, change)
	base = snaps[1]
	x := policy.NewCompiler()
	last := x.Compile(base) // what a holds
	if _, err := a.Apply(context.Background(), last); err != nil {
		b.Fatal(err)
	}
	p := newPhases("compile", "diff", "apply")
	i := 0
	settle()
	for b.Loop() {
		p.start()
		r := x.Compile(snaps[i%2])
		p.lap()
		ch := ruleset.Diff(last, r)
		p.lap()
		if ch.Full || ch.Empty() {
			b.Fatalf("change is not incremental: %s", ch)
		}
		if err := a.ApplyChanges(context.Background(), r, ch); err != nil {
			b.Fatal(err)
		}
		p.lap()
		last = r
		i++
	}
	p.report(b)
}

func BenchmarkChangeOnePod(b *testing.B)    { benchChange(b, addOnePod) }
func BenchmarkChangeOneLabel(b *testing.B)  { benchChange(b, relabelOnePod) }
func BenchmarkChangeOnePolicy(b *testing.B) { benchChange(b, editOnePolicy) }

// The huge cluster (synth.Huge: 50,000 pods, 5,000 policies, 200 local
// pods, the others on 1,000 nodes): a full sync, one kernel transaction, and one change of each kind;
// the big cluster's lines above, of the same run, are their baseline.
func BenchmarkFullSyncHuge(b *testing.B) { benchFullOf(b, synth.Cluster(synth.Huge)) }

func BenchmarkChangeOnePodHuge(b *testing.B) { benchChangeOf(b, synth.Cluster(synth.Huge), addOnePod) }
func BenchmarkChangeOneLabelHuge(b *testing.B) {
	benchChangeOf(b, synth.Cluster(synth.Huge), relabelOnePod)
}
func BenchmarkChangeOnePolicyHuge(b *testing.B) {
	benchChangeOf(b, synth.Cluster(synth.Huge), editOnePolicy)
}
