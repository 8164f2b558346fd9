package iptables

import (
	"strings"
	"testing"

	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/policy"
)

// BenchmarkRender measures Render for the benchmarks' cluster (synth.Big) and
// reports the size of the result: rules per family, a proxy for the
// per-packet cost of a new connection, which grows linearly here.
func BenchmarkRender(b *testing.B) {
	rs := policy.Compile(synth.Cluster(synth.Big))
	var v4 string
	for b.Loop() {
		v4, _ = Render(rs)
	}
	b.ReportMetric(float64(strings.Count(v4, "\n-A ")), "rules4")
	b.ReportMetric(float64(len(v4)), "bytes4")
}
