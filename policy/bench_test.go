package policy_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// BenchmarkCompile measures a full Compile of the big cluster.
func BenchmarkCompile(b *testing.B) {
	r := benchCompile(b, synth.Cluster(synth.Big))
	b.ReportMetric(float64(len(r.Sets)), "sets")
}

// benchCompile measures full Compiles of s and reports their CPU time and
// the chains of the result.
func benchCompile(b *testing.B, s policy.Snapshot) ruleset.Ruleset {
	var r ruleset.Ruleset
	c0 := cpuTime()
	for b.Loop() {
		r = policy.Compile(s)
	}
	b.ReportMetric(ms(cpuTime()-c0)/float64(b.N), "cpu-ms")
	b.ReportMetric(float64(len(r.Chains)), "chains")
	return r
}

// BenchmarkCompileTiers is the big cluster with 1,000
// ClusterNetworkPolicies of both tiers (synth.Options.ClusterPolicies).
func BenchmarkCompileTiers(b *testing.B) {
	o := synth.Big
	o.ClusterPolicies = 1000
	if r := benchCompile(b, synth.Cluster(o)); len(r.Problems) > 0 {
		b.Fatalf("problems: %v", r.Problems)
	}
}

// BenchmarkCompileDense is the dense cluster: 1,000 local pods.
func BenchmarkCompileDense(b *testing.B) {
	s := synth.Cluster(synth.Dense)
	c0 := cpuTime()
	for b.Loop() {
		policy.Compile(s)
	}
	b.ReportMetric(ms(cpuTime()-c0)/float64(b.N), "cpu-ms")
}

// The incremental benchmarks alternate one Compiler between the base
// snapshot and a changed one: each round is one change, compiled and
// diffed against the previous ruleset.
func BenchmarkCompilerOnePod(b *testing.B)    { benchCompiler(b, addOnePod) }
func BenchmarkCompilerOneLabel(b *testing.B)  { benchCompiler(b, relabelOnePod) }
func BenchmarkCompilerOnePolicy(b *testing.B) { benchCompiler(b, editOnePolicy) }

// BenchmarkCompilerNoChange is a sync that finds nothing changed: the
// fixed cost of comparing 10,000 pods and 1,000 policies.
func BenchmarkCompilerNoChange(b *testing.B) {
	benchCompiler(b, func(tb testing.TB, s policy.Snapshot) policy.Snapshot { return s })
}

// BenchmarkCompilerNewObjects is a sync where nothing changed but every
// policy is a new object (an agent that reads its manifests again).
func BenchmarkCompilerNewObjects(b *testing.B) {
	benchCompiler(b, func(_ testing.TB, s policy.Snapshot) policy.Snapshot {
		s.Policies = slices.Clone(s.Policies)
		for i, p := range s.Policies {
			s.Policies[i] = p.DeepCopy()
		}
		return s
	})
}

// The same changes at synth.Huge scale (50,000 pods, 5,000 policies):
// compile and diff only, no kernel (see BenchmarkChange*Huge for apply).
func BenchmarkCompilerOnePodHuge(b *testing.B)    { benchCompilerOf(b, synth.Huge, addOnePod) }
func BenchmarkCompilerOneLabelHuge(b *testing.B)  { benchCompilerOf(b, synth.Huge, relabelOnePod) }
func BenchmarkCompilerOnePolicyHuge(b *testing.B) { benchCompilerOf(b, synth.Huge, editOnePolicy) }

func benchCompiler(b *testing.B, change func(testing.TB, policy.Snapshot) policy.Snapshot) {
	benchCompilerOf(b, synth.Big, change)
}

func benchCompilerOf(b *testing.B, o synth.Options, change func(testing.TB, policy.Snapshot) policy.Snapshot) {
	snaps := sequenced(b, synth.Cluster(o), change)
	base := snaps[1]
	x := policy.NewCompiler()
	last := x.Compile(base)
	p := newPhases("compile", "diff")
	i := 0
	for b.Loop() {
		p.start()
		r := x.Compile(snaps[i%2])
		p.lap()
		if ch := ruleset.Diff(last, r); ch.Full {
			b.Fatalf("change is not incremental: %s", ch)
		}
		p.lap()
		last = r
		i++
	}
	p.report(b)
}

// sequenced returns the changed snapshot of base, then base, each with
// a Seq and the PodDelta relative to the other, as the agent's view gives
// them: the incremental benchmarks alternate the two.
func sequenced(tb testing.TB, base policy.Snapshot, change func(testing.TB, policy.Snapshot) policy.Snapshot) []policy.Snapshot {
	next := change(tb, base)
	base.Seq, next.Seq = 1, 2
	base.PodDelta, next.PodDelta = podDelta(next, base), podDelta(base, next)
	return []policy.Snapshot{next, base}
}

// phases accumulates the wall and CPU time of each phase of a benchmark
// round. On a loaded machine wall time swings; CPU time much less.
type phases struct {
	names     []string
	wall, cpu []time.Duration
	i         int
	t         time.Time
	c         time.Duration
}

func newPhases(names ...string) *phases {
	return &phases{names: names, wall: make([]time.Duration, len(names)), cpu: make([]time.Duration, len(names))}
}

func (p *phases) start() { p.i, p.t, p.c = 0, time.Now(), cpuTime() }

// lap ends the current phase.
func (p *phases) lap() {
	t, c := time.Now(), cpuTime()
	p.wall[p.i] += t.Sub(p.t)
	p.cpu[p.i] += c - p.c
	p.t, p.c = t, c
	p.i++
}

func (p *phases) report(b *testing.B) {
	for i, n := range p.names {
		b.ReportMetric(ms(p.wall[i])/float64(b.N), n+"-ms")
		b.ReportMetric(ms(p.cpu[i])/float64(b.N), n+"-cpu-ms")
	}
}

// reportTotal reports the sum of the phases' wall times, total-ms, beside
// them.
func (p *phases) reportTotal(b *testing.B) {
	var t time.Duration
	for _, w := range p.wall {
		t += w
	}
	b.ReportMetric(ms(t)/float64(b.N), "total-ms")
}

// addOnePod adds a local pod selected by policies.
func addOnePod(_ testing.TB, s policy.Snapshot) policy.Snapshot {
	s.Pods = append(slices.Clone(s.Pods), policy.Pod{
		Namespace: "ns3", Name: "new", Node: s.Node.Name, Labels: map[string]string{"app": "app3"},
		IPs: []netip.Addr{netip.MustParseAddr("10.200.0.1")},
	})
	return s
}

// relabelOnePod changes the labels of the first local pod.
func relabelOnePod(tb testing.TB, s policy.Snapshot) policy.Snapshot {
	s.Pods = slices.Clone(s.Pods)
	for i, p := range s.Pods {
		if p.Node == s.Node.Name {
			s.Pods[i].Labels = map[string]string{"app": "app-changed"}
			return s
		}
	}
	tb.Fatal("no local pod")
	return s
}

// editOnePolicy changes a port of the first policy that selects a local
// pod.
func editOnePolicy(tb testing.TB, s policy.Snapshot) policy.Snapshot {
	s.Policies = slices.Clone(s.Policies)
	r := policy.Compile(s)
	for i, p := range s.Policies {
		if _, ok := policy.IngressChain(r, p); ok {
			p = p.DeepCopy()
			p.Spec.Ingress[0].Ports[0].Port = fixtures.Port(81)
			s.Policies[i] = p
			return s
		}
	}
	tb.Fatal("no policy selects a local pod")
	return s
}

// TestBigSnapshotIsolatesLocalPods keeps the benchmark input meaningful.
func TestBigSnapshotIsolatesLocalPods(t *testing.T) {
	s := synth.Cluster(synth.Options{Pods: 1000, Policies: 100, Local: 1})
	local := 0
	for _, p := range s.Pods {
		if p.Node == s.Node.Name {
			local++
		}
	}
	r := policy.Compile(s)
	if len(r.Problems) != 0 {
		t.Fatalf("problems: %v", r.Problems)
	}
	m, _ := r.Set(policy.MapIngress4)
	if len(m.Elems) != local || local == 0 {
		t.Errorf("ingress map has %d local pods, want %d", len(m.Elems), local)
	}
	if p := s.Policies[0]; p.Spec.PodSelector.MatchLabels["app"] != "app0" {
		t.Errorf("policy %s/%s does not select app0, the local pods' app", p.Namespace, p.Name)
	} else if _, ok := policy.IngressChain(r, p); !ok {
		t.Errorf("policy %s/%s selects local pods but has no chain", p.Namespace, p.Name)
	}
}

func elemCount(r ruleset.Ruleset) int {
	n := 0
	for _, s := range r.Sets {
		n += len(s.Elems)
	}
	return n
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cpuTime is the process's user+system CPU time: on a loaded machine wall
// time swings, CPU time much less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// wideShapes are the worst shapes the API accepts under MaxPolicyItems:
// rules × ports × peers, no two rules sharing a port list or a peer union
// (see wideRules). The first is the
// policy of the finding (72 KiB: 1,000 ports × 1,000 podSelector peers),
// which compiled to 1,000,018 rules in 8.7 s before peers became one
// union group and ports one set lookup.
var wideShapes = []struct{ rules, ports, peers int }{
	{1, 1000, 1000},
	{4, 1200, 1200},
	{49, 100, 100},
	{900, 4, 5},
}

// BenchmarkCompileWide compiles one policy of each wide shape (one local
// pod, one peer pod per peer selector) and, in the same run, a baseline:
// the same ports and peers in rules of their own (rules × ports-only and
// rules × peers-only), whose size is their sum by construction. x-base is
// the ratio of the two CPU times: a product would show as a ratio growing
// with ports × peers; a sum stays near 1.
func BenchmarkCompileWide(b *testing.B) {
	for _, sh := range wideShapes {
		b.Run(fmt.Sprintf("rules=%d/ports=%d/peers=%d", sh.rules, sh.ports, sh.peers), func(b *testing.B) {
			wide := policy.WideSnapshot(sh.rules, sh.ports, sh.peers)
			base := policy.WideSnapshot(sh.rules, sh.ports, sh.peers)
			var split []networkingv1.NetworkPolicyIngressRule
			for _, r := range wide.Policies[0].Spec.Ingress {
				split = append(split, networkingv1.NetworkPolicyIngressRule{Ports: r.Ports},
					networkingv1.NetworkPolicyIngressRule{From: r.From})
			}
			base.Policies[0] = base.Policies[0].DeepCopy()
			base.Policies[0].Spec.Ingress = split
			var r ruleset.Ruleset
			var wideCPU, baseCPU time.Duration
			var alloc uint64
			var m0, m1 runtime.MemStats
			for b.Loop() {
				runtime.ReadMemStats(&m0)
				c0 := cpuTime()
				r = policy.Compile(wide)
				c1 := cpuTime()
				runtime.ReadMemStats(&m1)
				c2 := cpuTime()
				policy.Compile(base)
				wideCPU, baseCPU = wideCPU+c1-c0, baseCPU+cpuTime()-c2
				alloc += m1.TotalAlloc - m0.TotalAlloc
			}
			if p := policy.Compile(base).Problems; len(r.Problems)+len(p) != 0 {
				b.Fatalf("problems: %v %v", r.Problems, p)
			}
			rules := 0
			for _, ch := range r.Chains {
				rules += len(ch.Rules)
			}
			b.ReportMetric(ms(wideCPU)/float64(b.N), "cpu-ms")
			b.ReportMetric(float64(wideCPU)/float64(baseCPU), "x-base")
			b.ReportMetric(float64(alloc)/float64(b.N)/(1<<20), "alloc-MiB")
			b.ReportMetric(float64(rules), "rules")
			b.ReportMetric(float64(elemCount(r)), "elements")
		})
	}
}

// BenchmarkCompilerHeap reports the heap a Compiler keeps (what the
// garbage collector cannot free: the Compiler and its last ruleset) after
// a full Compile of the big cluster, compiler-MB, and after 20 changes
// (a label, a pod and a policy, back and forth), changed-MB. Run it with
// -benchtime 1x; a heap profile (-memprofile with -memprofilerate 1)
// names what holds it.
func BenchmarkCompilerHeap(b *testing.B) {
	s := synth.Cluster(synth.Big)
	var snaps [][]policy.Snapshot
	for _, change := range []func(testing.TB, policy.Snapshot) policy.Snapshot{relabelOnePod, addOnePod, editOnePolicy} {
		snaps = append(snaps, sequenced(b, s, change))
	}
	var full, changed float64
	for b.Loop() {
		base := testkit.LiveHeap()
		x := policy.NewCompiler()
		r := x.Compile(s)
		full += float64(testkit.LiveHeap() - base)
		for i := range 20 {
			r = x.Compile(snaps[i%3][i/3%2])
		}
		changed += float64(testkit.LiveHeap() - base)
		runtime.KeepAlive(x)
		runtime.KeepAlive(r)
	}
	b.ReportMetric(full/float64(b.N)/(1<<20), "compiler-MB")
	b.ReportMetric(changed/float64(b.N)/(1<<20), "changed-MB")
}
