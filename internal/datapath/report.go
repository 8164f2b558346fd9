package datapath

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Samples are one configuration's measurements, one value per round.
type Samples struct {
	Name    string
	Gbps    []float64
	P50     []float64 // µs
	P99     []float64 // µs
	Conns   []float64 // per second
	Applies []time.Duration
}

func (s *Samples) add(gbps float64, rtts []time.Duration, conns float64) {
	s.Gbps = append(s.Gbps, gbps)
	s.P50 = append(s.P50, micros(percentile(rtts, 0.50)))
	s.P99 = append(s.P99, micros(percentile(rtts, 0.99)))
	s.Conns = append(s.Conns, conns)
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// Median of v (0 when empty).
func Median(v []float64) float64 {
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

// MedianDuration is the median of v.
func MedianDuration(v []time.Duration) time.Duration {
	f := make([]float64, len(v))
	for i, d := range v {
		f[i] = float64(d)
	}
	return time.Duration(Median(f))
}

// metric is one line of the result table.
type metric struct {
	label, unit string
	format      string
	get         func(*Samples) []float64
	target      string // for the Split with Targets, printed only
}

// The targets are weir's against the conntrack floor: a stateful
// NetworkPolicy dataplane pays conntrack, so it is judged against the same
// node with a one-rule conntrack table (ConntrackOnly).
var metrics = []metric{
	{"throughput", "Gbit/s", "%.2f", func(s *Samples) []float64 { return s.Gbps }, "≥ 0.97x"},
	{"latency p50", "µs", "%.1f", func(s *Samples) []float64 { return s.P50 }, "≤ 1.05x"},
	{"latency p99", "µs", "%.1f", func(s *Samples) []float64 { return s.P99 }, ""},
	{"conn rate", "conn/s", "%.0f", func(s *Samples) []float64 { return s.Conns }, "≥ 0.95x"},
}

// Split is one line of Report after the table: the ratios of configuration
// Num to configuration Den, under Label; the metrics' targets are printed
// on the line with Targets.
type Split struct {
	Num, Den, Label string
	Targets         bool
}

// Report prints medians per configuration and their ratios to the first
// (the baseline): the ratio of the medians, and the median of the ratios
// round by round ("paired"), which cancels the drift of the machine from
// one round to the next; then one line per split whose two configurations
// were measured. Ratios are printed, never judged: single runs swing
// widely, and the reader decides.
func Report(w io.Writer, all []*Samples, splits []Split, verbose bool) {
	base := all[0]
	fmt.Fprintf(w, "\nmedians of %d interleaved rounds (ratio of medians to %s / median of the rounds' ratios):\n", len(base.Gbps), base.Name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, m := range metrics {
		b := Median(m.get(base))
		cells := []string{m.label, fmt.Sprintf("%s "+m.format+" %s", base.Name, b, m.unit)}
		for _, s := range all[1:] {
			v := Median(m.get(s))
			cells = append(cells, fmt.Sprintf("%s "+m.format+" (%.2fx / %.2fx)", s.Name, v, ratio(v, b), Median(paired(m.get(s), m.get(base)))))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	tw.Flush()
	splitCost(w, all, splits)
	if !verbose {
		return
	}
	fmt.Fprintf(w, "\nper round (paired ratios to %s, min .. median .. max):\n", base.Name)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, m := range metrics {
		for _, s := range all {
			cells := []string{m.label, s.Name}
			for _, v := range m.get(s) {
				cells = append(cells, fmt.Sprintf(m.format, v))
			}
			if s != base {
				r := paired(m.get(s), m.get(base))
				cells = append(cells, fmt.Sprintf("ratios %.2f .. %.2f .. %.2f", slices.Min(r), Median(r), slices.Max(r)))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
	}
	tw.Flush()
}

// splitCost prints one line per split whose configurations were
// measured: each metric as the ratio of the medians / the median of the
// rounds' paired ratios.
func splitCost(w io.Writer, all []*Samples, splits []Split) {
	byName := map[string]*Samples{}
	for _, s := range all {
		byName[s.Name] = s
	}
	for _, q := range splits {
		num, den := byName[q.Num], byName[q.Den]
		if num == nil || den == nil {
			continue
		}
		var cells []string
		for _, m := range metrics {
			c := fmt.Sprintf("%s %.2fx / %.2fx", m.label, ratio(Median(m.get(num)), Median(m.get(den))),
				Median(paired(m.get(num), m.get(den))))
			if q.Targets && m.target != "" {
				c += " (target " + m.target + ")"
			}
			cells = append(cells, c)
		}
		fmt.Fprintf(w, "%s (%s / %s, %d pairs): %s\n", q.Label, q.Num, q.Den, min(len(num.Gbps), len(den.Gbps)), strings.Join(cells, ", "))
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

// MS formats d in milliseconds.
func MS(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
