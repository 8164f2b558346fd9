package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// samples are one configuration's measurements, one value per round.
type samples struct {
	name    string
	gbps    []float64
	p50     []float64 // µs
	p99     []float64 // µs
	conns   []float64 // per second
	applies []time.Duration
}

func (s *samples) add(gbps float64, rtts []time.Duration, conns float64) {
	s.gbps = append(s.gbps, gbps)
	s.p50 = append(s.p50, micros(percentile(rtts, 0.50)))
	s.p99 = append(s.p99, micros(percentile(rtts, 0.99)))
	s.conns = append(s.conns, conns)
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianDuration(v []time.Duration) time.Duration {
	f := make([]float64, len(v))
	for i, d := range v {
		f[i] = float64(d)
	}
	return time.Duration(median(f))
}

// metric is one line of the result table.
type metric struct {
	label, unit string
	format      string
	get         func(*samples) []float64
	target      string // for nft / conntrack, printed only
}

// The targets are weir's against the conntrack floor (nft / conntrack,
// see splitCost): a stateful NetworkPolicy dataplane pays conntrack, so it
// is judged against the same node with a one-rule conntrack table.
var metrics = []metric{
	{"throughput", "Gbit/s", "%.2f", func(s *samples) []float64 { return s.gbps }, "≥ 0.97x"},
	{"latency p50", "µs", "%.1f", func(s *samples) []float64 { return s.p50 }, "≤ 1.05x"},
	{"latency p99", "µs", "%.1f", func(s *samples) []float64 { return s.p99 }, ""},
	{"conn rate", "conn/s", "%.0f", func(s *samples) []float64 { return s.conns }, "≥ 0.95x"},
}

// report prints medians per configuration and their ratios to the first
// (the baseline): the ratio of the medians, and the median of the ratios
// round by round ("paired"), which cancels the drift of the machine from
// one round to the next. Ratios are printed, never judged: single runs
// swing widely, and the reader decides.
func report(w io.Writer, all []*samples, verbose bool) {
	base := all[0]
	fmt.Fprintf(w, "\nmedians of %d interleaved rounds (ratio of medians to %s / median of the rounds' ratios):\n", len(base.gbps), base.name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, m := range metrics {
		b := median(m.get(base))
		cells := []string{m.label, fmt.Sprintf("%s "+m.format+" %s", base.name, b, m.unit)}
		for _, s := range all[1:] {
			v := median(m.get(s))
			cells = append(cells, fmt.Sprintf("%s "+m.format+" (%.2fx / %.2fx)", s.name, v, ratio(v, b), median(paired(m.get(s), m.get(base)))))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	tw.Flush()
	splitCost(w, all)
	if !verbose {
		return
	}
	fmt.Fprintf(w, "\nper round (paired ratios to %s, min .. median .. max):\n", base.name)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, m := range metrics {
		for _, s := range all {
			cells := []string{m.label, s.name}
			for _, v := range m.get(s) {
				cells = append(cells, fmt.Sprintf(m.format, v))
			}
			if s != base {
				r := paired(m.get(s), m.get(base))
				cells = append(cells, fmt.Sprintf("ratios %.2f .. %.2f .. %.2f", slices.Min(r), median(r), slices.Max(r)))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
	}
	tw.Flush()
}

// splitCost prints, for the configurations that were measured, ratios
// that split the table's cost, each as the ratio of the medians / the
// median of the rounds' paired ratios: nft against nft-bare (the same
// table compiled without policies) is the policy walk alone; nft and
// nft-bare against conntrack (one stateful rule) are what weir adds to the
// conntrack that any stateful filtering pays; each conntrack+<part>
// against conntrack is that part of the skeleton alone (-parts). nft /
// conntrack carries the targets.
func splitCost(w io.Writer, all []*samples) {
	byName := map[string]*samples{}
	for _, s := range all {
		byName[s.name] = s
	}
	type split struct {
		num, den, label string
		targets         bool // the line the metrics' targets are for
	}
	splits := []split{
		{"nft", "nft-bare", "policy walk alone", false},
		{"nft", "conntrack", "weir beyond conntrack", true},
		{"nft-bare", "conntrack", "NAT and skeleton", false},
	}
	for _, s := range all {
		if part, ok := strings.CutPrefix(s.name, "conntrack+"); ok {
			splits = append(splits, split{s.name, "conntrack", part + " chain alone", false})
		}
	}
	for _, q := range splits {
		num, den := byName[q.num], byName[q.den]
		if num == nil || den == nil {
			continue
		}
		var cells []string
		for _, m := range metrics {
			c := fmt.Sprintf("%s %.2fx / %.2fx", m.label, ratio(median(m.get(num)), median(m.get(den))),
				median(paired(m.get(num), m.get(den))))
			if q.targets && m.target != "" {
				c += " (target " + m.target + ")"
			}
			cells = append(cells, c)
		}
		fmt.Fprintf(w, "%s (%s / %s, %d pairs): %s\n", q.label, q.num, q.den, min(len(num.gbps), len(den.gbps)), strings.Join(cells, ", "))
	}
}

func ratio(v, base float64) float64 {
	if base == 0 {
		return 0
	}
	return v / base
}

// paired divides round by round.
func paired(v, base []float64) []float64 {
	out := make([]float64, min(len(v), len(base)))
	for i := range out {
		out[i] = ratio(v[i], base[i])
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
