package main

import (
	"strings"
	"testing"

	"github.com/weir-cni/weir/internal/datapath"
	"github.com/weir-cni/weir/internal/textdiff"
)

// TestReportRatios pins what each cell prints: the ratio of the medians and
// the median of the rounds' paired ratios (they differ when the machine
// drifts between rounds), and the lines that split the cost.
func TestReportRatios(t *testing.T) {
	none := &datapath.Samples{Name: "none", Gbps: []float64{10, 20, 30}, P50: []float64{40, 40, 40}, P99: []float64{80, 80, 80}, Conns: []float64{1000, 2000, 3000}}
	// Half the baseline in every round: both ratios 0.50x.
	nft := &datapath.Samples{Name: "nft", Gbps: []float64{5, 10, 15}, P50: []float64{44, 44, 44}, P99: []float64{80, 80, 80}, Conns: []float64{900, 1800, 2700}}
	bare := &datapath.Samples{Name: "nft-bare", Gbps: []float64{5, 10, 15}, P50: []float64{40, 40, 40}, P99: []float64{80, 80, 80}, Conns: []float64{1000, 2000, 3000}}
	// Rounds of 0.9x, 1.5x and 0.9x: median 27 / 20 = 1.35x, paired 0.90x.
	ct := &datapath.Samples{Name: "conntrack", Gbps: []float64{9, 30, 27}, P50: []float64{40, 40, 40}, P99: []float64{80, 80, 80}, Conns: []float64{1000, 2000, 3000}}

	var b strings.Builder
	nat := &datapath.Samples{Name: "conntrack+nat", Gbps: []float64{9, 30, 27}, P50: []float64{40, 40, 40}, P99: []float64{80, 80, 80}, Conns: []float64{900, 1800, 2700}}
	all := []*datapath.Samples{none, nft, bare, ct, nat}
	datapath.Report(&b, all, splits(all), false)
	out := b.String()
	textdiff.Mentions(t, "report", out,
		"nft 10.00 (0.50x / 0.50x)",
		"conntrack 27.00 (1.35x / 0.90x)",
		"nft 44.0 (1.10x / 1.10x)",
		"nft 1800 (0.90x / 0.90x)",
		"policy walk alone (nft / nft-bare, 3 pairs): throughput 1.00x / 1.00x, latency p50 1.10x / 1.10x, latency p99 1.00x / 1.00x, conn rate 0.90x / 0.90x",
		"weir beyond conntrack (nft / conntrack, 3 pairs): throughput 0.37x / 0.56x (target ≥ 0.97x), latency p50 1.10x / 1.10x (target ≤ 1.05x), latency p99 1.00x / 1.00x, conn rate 0.90x / 0.90x (target ≥ 0.95x)",
		"NAT and skeleton (nft-bare / conntrack, 3 pairs): throughput 0.37x / 0.56x, latency p50 1.00x / 1.00x, latency p99 1.00x / 1.00x, conn rate 1.00x / 1.00x",
		"nat chain alone (conntrack+nat / conntrack, 3 pairs): throughput 1.00x / 1.00x, latency p50 1.00x / 1.00x, latency p99 1.00x / 1.00x, conn rate 0.90x / 0.90x")
}
