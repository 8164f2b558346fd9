package datapath

import (
	"testing"
	"time"
)

func TestStatistics(t *testing.T) {
	us := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Microsecond
		}
		return out
	}
	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"median of an odd count is the middle value", Median([]float64{3, 1, 2}), 2},
		{"median of an even count averages the middle two", Median([]float64{4, 1, 3, 2}), 2.5},
		{"median of nothing is zero", Median(nil), 0},
		{"p50 of sorted samples", micros(percentile(us(1, 2, 3, 4, 5), 0.5)), 3},
		{"p99 of 100 samples is the 99th", micros(percentile(us(seq(100)...), 0.99)), 99},
		{"p99 of one sample is that sample", micros(percentile(us(7), 0.99)), 7},
		{"ratio to a zero baseline is zero, not Inf", ratio(5, 0), 0},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}
