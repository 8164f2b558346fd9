package main

import (
	"strings"
	"testing"
	"time"

	"github.com/weir-cni/weir/internal/datapath"
	"github.com/weir-cni/weir/internal/textdiff"
)

// The datapath pods, registered in the benchmark's cluster, are held by
// policies both ways: weir's table allows the test connection only by the
// last policy of each side (tier-*, the one shape allowing TCP 5432) and
// drops the denied port. On another port, or with other labels, it would
// be denied, or allowed without a walk.
func TestDatapathConnectionWalksThePolicies(t *testing.T) {
	for _, sz := range sizes {
		p, err := dpPath(sz)
		if err != nil {
			t.Fatalf("%s: %v", sz.name, err)
		}
		last := func(walk []string) string { return walk[len(walk)-1] }
		if !strings.HasPrefix(last(p.Egress), "ns2/tier-") || !strings.HasPrefix(last(p.Ingress), "ns0/tier-") || len(p.Ingress) < 2 {
			t.Errorf("%s: egress walks %v, ingress %v; want each to end on a tier-* policy, after others on ingress", sz.name, p.Egress, p.Ingress)
		}
	}
}

// The report puts weir and kube-router side by side: each against the
// conntrack floor (weir's with the targets) and kube-router against weir.
func TestDatapathReportLines(t *testing.T) {
	s := func(name string, gbps, conns float64) *datapath.Samples {
		return &datapath.Samples{Name: name, Gbps: []float64{gbps, gbps}, P50: []float64{50, 50}, P99: []float64{90, 90}, Conns: []float64{conns, conns}}
	}
	var b strings.Builder
	datapath.Report(&b, []*datapath.Samples{s("none", 10, 4000), s("conntrack", 10, 4000), s("weir", 9, 3600), s("kube-router", 4.5, 1200)}, dpSplits, false)
	textdiff.Mentions(t, "report", b.String(),
		"kube-router 4.50 (0.45x / 0.45x)",
		"weir beyond conntrack (weir / conntrack, 2 pairs): throughput 0.90x / 0.90x (target ≥ 0.97x), latency p50 1.00x / 1.00x (target ≤ 1.05x), latency p99 1.00x / 1.00x, conn rate 0.90x / 0.90x (target ≥ 0.95x)",
		"kube-router beyond conntrack (kube-router / conntrack, 2 pairs): throughput 0.45x / 0.45x, latency p50 1.00x / 1.00x, latency p99 1.00x / 1.00x, conn rate 0.30x / 0.30x",
		"kube-router against weir (kube-router / weir, 2 pairs): throughput 0.50x / 0.50x, latency p50 1.00x / 1.00x, latency p99 1.00x / 1.00x, conn rate 0.33x / 0.33x")
}

func TestValidateRejectsBadDatapathFlags(t *testing.T) {
	for _, o := range []options{{peerRounds: -1, peerDuration: time.Second}, {peerRounds: 3}, {peerRounds: 3, peerDuration: -time.Second}} {
		if err := o.validate(); err == nil {
			t.Errorf("validate(rounds %d, duration %v) = nil, want an error", o.peerRounds, o.peerDuration)
		}
	}
	for _, o := range []options{{peerRounds: 0, peerDuration: time.Second}, {peerRounds: 15, peerDuration: time.Second}} {
		if err := o.validate(); err != nil {
			t.Errorf("validate(rounds %d, duration %v) = %v", o.peerRounds, o.peerDuration, err)
		}
	}
}
