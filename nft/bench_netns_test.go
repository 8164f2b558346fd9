//go:build integration

package nft

import (
	"testing"
)

// BenchmarkFullSync: Compile + one-transaction apply of 10,000 pods on 100
// nodes (100 local) and 1,000 policies, replacing the table each round.
func BenchmarkFullSync(b *testing.B) { benchFull(b, 100) }

// BenchmarkFullSyncDense is the same cluster on 10 nodes: 1,000 local pods,
// so nearly every policy selects a local pod and is rendered.
func BenchmarkFullSyncDense(b *testing.B) { benchFull(b, 10) }

func benchFull(b *testing.B, nodes int) {
	_, path := newNetns(b)
	a, err := NewNetlinkApplier(path)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	s := bigSnapshot(10000, 1000, nodes)
	var r Ruleset
	p := newPhases("compile", "apply")
	for b.Loop() {
		p.start()
		r = Compile(s)
		p.lap()
		if err := a.ApplyFull(r); err != nil {
			b.Fatal(err)
		}
		p.lap()
	}
	p.report(b)
	b.ReportMetric(float64(len(r.Sets)), "sets")
	b.ReportMetric(float64(len(r.Chains)), "chains")
	b.ReportMetric(float64(elemCount(r)), "elems")
}

func elemCount(r Ruleset) int {
	n := 0
	for _, s := range r.Sets {
		n += len(s.Elems)
	}
	return n
}

// benchChange applies base, then alternates one Compiler between two
// snapshots, each round costing Compiler.Compile + Diff + apply of one
// change.
func benchChange(b *testing.B, change func(testing.TB, Snapshot) Snapshot) {
	_, path := newNetns(b)
	a, err := NewNetlinkApplier(path)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	base := bigSnapshot(10000, 1000, 100)
	snaps := []Snapshot{change(b, base), base}
	x := NewCompiler()
	if err := a.Apply(x.Compile(base)); err != nil {
		b.Fatal(err)
	}
	p := newPhases("compile", "diff", "apply")
	i := 0
	for b.Loop() {
		p.start()
		r := x.Compile(snaps[i%2])
		p.lap()
		ch := Diff(*a.last, r)
		p.lap()
		if ch.Full || ch.Empty() {
			b.Fatalf("change is not incremental: %s", ch)
		}
		if err := a.ApplyChanges(r, ch); err != nil {
			b.Fatal(err)
		}
		p.lap()
		i++
	}
	p.report(b)
}

func BenchmarkChangeOnePod(b *testing.B)    { benchChange(b, addOnePod) }
func BenchmarkChangeOneLabel(b *testing.B)  { benchChange(b, relabelOnePod) }
func BenchmarkChangeOnePolicy(b *testing.B) { benchChange(b, editOnePolicy) }
