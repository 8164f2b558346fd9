//go:build integration

package nft

import (
	"net/netip"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
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
	var compile, apply time.Duration
	var r Ruleset
	c0 := cpuTime()
	for b.Loop() {
		t0 := time.Now()
		r = Compile(s)
		t1 := time.Now()
		if err := a.ApplyFull(r); err != nil {
			b.Fatal(err)
		}
		compile += t1.Sub(t0)
		apply += time.Since(t1)
	}
	b.ReportMetric(ms(cpuTime()-c0)/float64(b.N), "cpu-ms")
	b.ReportMetric(ms(compile)/float64(b.N), "compile-ms")
	b.ReportMetric(ms(apply)/float64(b.N), "apply-ms")
	b.ReportMetric(float64(len(r.Sets)), "sets")
	b.ReportMetric(float64(len(r.Chains)), "chains")
}

// benchChange applies base, then alternates between two snapshots, each
// round costing compile + diff + apply of one change.
func benchChange(b *testing.B, change func(Snapshot) Snapshot) {
	_, path := newNetns(b)
	a, err := NewNetlinkApplier(path)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	base := bigSnapshot(10000, 1000, 100)
	changed := change(base)
	if err := a.Apply(Compile(base)); err != nil {
		b.Fatal(err)
	}
	snaps := []Snapshot{changed, base}
	var compile, diff, apply time.Duration
	i := 0
	c0 := cpuTime()
	for b.Loop() {
		t0 := time.Now()
		r := Compile(snaps[i%2])
		t1 := time.Now()
		ch := Diff(*a.last, r)
		t2 := time.Now()
		if ch.Full || ch.Empty() {
			b.Fatalf("change is not incremental: %s", ch)
		}
		if err := a.ApplyChanges(r, ch); err != nil {
			b.Fatal(err)
		}
		compile += t1.Sub(t0)
		diff += t2.Sub(t1)
		apply += time.Since(t2)
		i++
	}
	b.ReportMetric(ms(cpuTime()-c0)/float64(b.N), "cpu-ms")
	b.ReportMetric(ms(compile)/float64(b.N), "compile-ms")
	b.ReportMetric(ms(diff)/float64(b.N), "diff-ms")
	b.ReportMetric(ms(apply)/float64(b.N), "apply-ms")
}

func BenchmarkChangeOnePod(b *testing.B) {
	benchChange(b, func(s Snapshot) Snapshot {
		s.Pods = append(append([]Pod(nil), s.Pods...), Pod{
			Namespace: "ns3", Name: "new", Node: "n1", Labels: map[string]string{"app": "app3"},
			IPs: []netip.Addr{netip.MustParseAddr("10.200.0.1")},
		})
		return s
	})
}

func BenchmarkChangeOneLabel(b *testing.B) {
	benchChange(b, func(s Snapshot) Snapshot {
		s.Pods = append([]Pod(nil), s.Pods...)
		for i, p := range s.Pods {
			if p.Node == s.Node.Name {
				s.Pods[i].Labels = map[string]string{"app": "app-changed"}
				return s
			}
		}
		b.Fatal("no local pod")
		return s
	})
}

func BenchmarkChangeOnePolicy(b *testing.B) {
	benchChange(b, func(s Snapshot) Snapshot {
		s.Policies = append(s.Policies[:0:0], s.Policies...)
		r := Compile(s)
		for i, p := range s.Policies {
			if _, ok := r.Chain(policyChainName(dirIngress, policyKey(p))); ok {
				p = p.DeepCopy()
				p.Spec.Ingress[0].Ports[0].Port = ptr(intstr.FromInt32(81))
				s.Policies[i] = p
				return s
			}
		}
		b.Fatal("no policy selects a local pod")
		return s
	})
}
