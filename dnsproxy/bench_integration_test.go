//go:build integration

package dnsproxy

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/nft"
	"github.com/weir-cni/weir/ruleset"
)

// BenchmarkProxyAddedLatency: the latency of a UDP lookup of a name the
// proxy learns, sent to a loopback resolver directly (the baseline),
// through a proxy whose Learner costs nothing (fake), and through a proxy
// learning into the kernel (kernel: nft's Learner on a table like the
// agent's, in a namespace of its own, so that each answer waits for its
// netlink transaction), alternated lookup by lookup. It reports the p50
// and p99 of each, what each proxy adds to the direct lookup, and their
// ratios to it; kernel minus fake is the netlink write. Every lookup
// refreshes one element, as a pod asking again does; the benchmark fails
// unless each proxy learned every answer.
func BenchmarkProxyAddedLatency(b *testing.B) {
	upstream := startUpstream(b)
	fake, fakePort := startProxy(b, Config{Learner: &fakeLearner{}}, upstream)
	kernel, kernelPort := startProxy(b, Config{Learner: kernelLearner(b)}, upstream)
	series := []struct {
		name   string
		server string
		proxy  *Proxy
		took   []time.Duration
	}{
		{name: "direct", server: upstream.String()},
		{name: "fake", server: netip.AddrPortFrom(pod4, uint16(fakePort)).String(), proxy: fake},
		{name: "kernel", server: netip.AddrPortFrom(pod4, uint16(kernelPort)).String(), proxy: kernel},
	}
	c := dns.Client{Net: "udp", Timeout: 2 * time.Second}
	q := new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)
	b.ResetTimer()
	for range b.N {
		for i := range series {
			start := time.Now()
			if _, _, err := c.Exchange(q, series[i].server); err != nil {
				b.Fatalf("%s: %v", series[i].name, err)
			}
			series[i].took = append(series[i].took, time.Since(start))
		}
	}
	b.StopTimer()
	for _, s := range series[1:] {
		if got := testutil.ToFloat64(s.proxy.metrics.learned); got != float64(b.N) {
			b.Fatalf("%s: %v addresses learned in %d lookups (%v errors)", s.name, got, b.N, testutil.ToFloat64(s.proxy.metrics.learnErrors))
		}
	}
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50", 0.50}, {"p99", 0.99}} {
		direct := quantile(series[0].took, p.q)
		b.ReportMetric(micros(direct), "direct-"+p.name+"-us")
		for _, s := range series[1:] {
			d := quantile(s.took, p.q)
			b.ReportMetric(micros(d), s.name+"-"+p.name+"-us")
			b.ReportMetric(micros(d-direct), s.name+"-added-"+p.name+"-us")
			b.ReportMetric(float64(d)/float64(direct), s.name+"/direct-"+p.name)
		}
	}
}

// kernelLearner applies, in a namespace of its own, a table with the
// learned-address sets of testRules (as the compiler declares them) and
// the rules that look them up, and returns a Learner on it, closed when
// the benchmark ends.
func kernelLearner(b *testing.B) *nft.Learner {
	b.Helper()
	n := testkit.NewTestNS(b, "weirb-dns-")
	a, err := nft.NewNetlinkApplier(n.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = a.Close() })
	if err := a.ApplyFull(context.Background(), learnedTable()); err != nil {
		b.Fatal(err)
	}
	l, err := a.NewLearner()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close() })
	return l
}

// learnedTable is a forward chain accepting `saddr . daddr` found in the
// learned-address sets of testRules, both families.
func learnedTable() ruleset.Ruleset {
	chain := ruleset.Chain{Name: "forward", Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookForward}}
	var sets []ruleset.Set
	for _, r := range testRules() {
		for _, f := range []struct {
			name         string
			typ          ruleset.Type
			saddr, daddr ruleset.Field
		}{{r.Set4, ruleset.TypeIPv4, ruleset.FieldIPSaddr, ruleset.FieldIPDaddr}, {r.Set6, ruleset.TypeIPv6, ruleset.FieldIP6Saddr, ruleset.FieldIP6Daddr}} {
			sets = append(sets, ruleset.Set{Name: f.name, Key: []ruleset.Type{f.typ, f.typ}, Timeout: true, Size: 4096, Dynamic: true})
			chain.Rules = append(chain.Rules, ruleset.Rule{
				Matches: []ruleset.Match{{Kind: ruleset.MatchLookup, Set: f.name, Fields: []ruleset.Field{f.saddr, f.daddr}}},
				Verdict: ruleset.Verdict{Kind: ruleset.VerdictAccept}})
		}
	}
	return ruleset.Ruleset{Sets: sets, Chains: []ruleset.Chain{chain}}
}

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
