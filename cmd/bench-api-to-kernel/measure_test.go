package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weir-cni/weir/agentapi"
)

// phases ends the apply phase when the bench saw the change if the agent
// stamped Applied later, and a sync that compiled after the bench saw the
// change (another sync made it) gives phases adding up to more than the
// total, which overrun reports.
func TestPhases(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	d := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	cases := []struct {
		name        string
		seen        time.Time
		ts          agentapi.SyncTimes
		apply, poll time.Duration
		overrun     bool
	}{
		{"applied before the bench saw it", ms(10), agentapi.SyncTimes{FirstEvent: ms(1), Start: ms(2), Read: ms(3), Compiled: ms(5), Applied: ms(9)},
			d(4), d(1), false},
		{"applied stamped after the bench saw it", ms(8), agentapi.SyncTimes{FirstEvent: ms(1), Start: ms(2), Read: ms(3), Compiled: ms(5), Applied: ms(9)},
			d(3), 0, false},
		{"compiled after the bench saw it", ms(8), agentapi.SyncTimes{FirstEvent: ms(1), Start: ms(2), Read: ms(3), Compiled: ms(9), Applied: ms(10)},
			0, 0, true},
	}
	for _, tc := range cases {
		s := phases(t0, tc.seen, tc.ts)
		if s.total != tc.seen.Sub(t0) || s.apply != tc.apply || s.poll != tc.poll || s.overrun() != tc.overrun {
			t.Errorf("%s: total %v, %s, overrun %v; want apply %v, poll %v, overrun %v",
				tc.name, s.total, s.phaseList(), s.overrun(), tc.apply, tc.poll, tc.overrun)
		}
	}
}

// printSamples counts and lists the samples whose phases overrun their
// total.
func TestPrintSamplesFlagsOverruns(t *testing.T) {
	ms := time.Millisecond
	ok := sample{total: 10 * ms, watch: ms, queue: ms, read: ms, compile: 2 * ms, apply: 4 * ms, poll: ms, phased: true}
	over := sample{total: 8 * ms, watch: ms, queue: ms, read: ms, compile: 6 * ms, apply: 0, poll: 0, phased: true}
	var out []string
	pr := func(f string, a ...any) { out = append(out, fmt.Sprintf(f, a...)) }
	printSamples(pr, "x", []sample{ok, over, ok}, "")
	text := strings.Join(out, "\n")
	if !strings.Contains(text, "1 of 3 samples have phases adding up to more than their total") || !strings.Contains(text, "    8ms: ") {
		t.Errorf("printSamples did not flag the overrun:\n%s", text)
	}
	out = nil
	printSamples(pr, "x", []sample{ok, ok}, "")
	if text := strings.Join(out, "\n"); strings.Contains(text, "more than their total") {
		t.Errorf("printSamples flagged samples that add up:\n%s", text)
	}
}
