//go:build integration

package iptables

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/weir-cni/weir/examples"
	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// TestCountersDuringApplies reads the counters in a loop while another
// goroutine applies two rulesets in turn, as a metrics scrape during syncs
// does. The rulesets lay counted rules out differently, so a read by a
// layout the kernel did not hold while iptables-save ran would find chains
// that do not hold the rules it expects, and report an error. Reads do not
// take turns with the applies (an Apply never waits for a read): a read
// either counts by the layout the kernel held or, when every attempt
// overlapped an Apply that changed it, says ErrRulesChanging. Once the
// applies stop, a read counts by the last ruleset's layout.
func TestCountersDuringApplies(t *testing.T) {
	tp := newTopology(t, "cd")
	a, err := New(WithNetNS(tp.nodePath), WithMode(ModeLegacy))
	if err != nil {
		t.Fatal(err)
	}
	rulesets := []ruleset.Ruleset{
		policy.Compile(kernelSnapshot(t, examples.TalkPolicies)),
		policy.Compile(kernelSnapshot(t, kernelScenarios[len(kernelScenarios)-1].policies)),
	}
	if slices.Equal(rulesets[0].Counters, rulesets[1].Counters) {
		t.Fatal("the two rulesets have the same counters: the test needs two layouts")
	}
	ctx := context.Background()
	if _, err := a.Apply(ctx, rulesets[0]); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, changing int
	var readErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := a.Counters(ctx)
			switch {
			case errors.Is(err, ErrRulesChanging):
				changing++
			case err != nil:
				readErr = err
				return
			default:
				reads++
			}
		}
	}()
	for i := range 40 {
		if _, err := a.Apply(ctx, rulesets[(i+1)%2]); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if readErr != nil {
		t.Errorf("Counters during applies: %v", readErr)
	}
	// Each call makes up to countersAttempts reads, each as long as one
	// iptables-save per family.
	if reads+changing < 3 {
		t.Errorf("only %d Counters calls ran during 40 applies", reads+changing)
	}
	t.Logf("%d Counters calls read during 40 applies, %d more saw the rules change at every read", reads, changing)
	vals, err := a.Counters(ctx)
	if err != nil {
		t.Fatalf("Counters after the applies: %v", err)
	}
	last := rulesets[0] // the 40th Apply's
	if len(vals) != len(last.Counters) {
		t.Errorf("Counters after the applies: %d counters, want the last ruleset's %d", len(vals), len(last.Counters))
	}
	for _, c := range last.Counters {
		if _, ok := vals[c.Name]; !ok {
			t.Errorf("Counters after the applies: no %s", c.Name)
		}
	}
}

// TestCountersRestartWhenTheirChainIsRewritten pins what the README says of
// iptables counters: they hold across applies that leave their chains
// alone, and restart from zero when Apply rewrites a chain holding their
// rules — when the pods a rule matches change, and on the rewrite of every
// chain each fullEvery-th Apply.
func TestCountersRestartWhenTheirChainIsRewritten(t *testing.T) {
	tp := newTopology(t, "cr")
	for _, h := range kernelHosts {
		serve(t, tp.addHost(t, h.key, h.ips...), kernelPorts)
	}
	a, err := New(WithNetNS(tp.nodePath), WithMode(ModeLegacy))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	snap := kernelSnapshot(t, examples.TalkPolicies)
	rs := policy.Compile(snap)
	allowed := testkit.Probe{From: "prod", To: "web", Proto: "tcp", Port: 80, Want: true}
	pkt := ruleset.Packet{Src: pick(tp.hosts["prod"], false), Dst: pick(tp.hosts["web"], false), Proto: ruleset.ProtoTCP, DPort: 80}
	v, steps := ruleset.Trace(rs, pkt)
	counters := tracedCounters(steps)
	if v != ruleset.VerdictAccept || len(counters) != 1 {
		t.Fatalf("trace: %v, counters %v; want accepted by one counting rule", v, counters)
	}
	name := counters[0]
	packets := func() uint64 {
		t.Helper()
		vals, err := a.Counters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return vals[name].Packets
	}

	if _, err := a.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if got := runProbes(t, tp, []testkit.Probe{allowed}); !got[0] {
		t.Fatal("prod -> web:80 was dropped")
	}
	if n := packets(); n != 1 {
		t.Fatalf("%s counted %d packets after one connection, want 1", name, n)
	}
	if _, err := a.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if n := packets(); n != 1 {
		t.Errorf("%s counted %d packets after an unchanged apply, want 1 (kept)", name, n)
	}

	// Another production pod: the rule now matches two pods.
	more := snap
	more.Pods = append(slices.Clone(snap.Pods), policy.Pod{Namespace: "prod", Name: "other", Node: "n2",
		IPs: []netip.Addr{netip.MustParseAddr("10.0.1.60")}})
	if _, err := a.Apply(ctx, policy.Compile(more)); err != nil {
		t.Fatal(err)
	}
	if n := packets(); n != 0 {
		t.Errorf("%s counted %d packets after the pods it matches changed, want 0 (its chain rewritten)", name, n)
	}

	if got := runProbes(t, tp, []testkit.Probe{allowed}); !got[0] {
		t.Fatal("prod -> web:80 was dropped")
	}
	for a.fams[0].applies%fullEvery != fullEvery-1 {
		if _, err := a.Apply(ctx, policy.Compile(more)); err != nil {
			t.Fatal(err)
		}
		if n := packets(); n != 1 {
			t.Fatalf("%s counted %d packets after unchanged apply %d, want 1", name, n, a.fams[0].applies)
		}
	}
	if _, err := a.Apply(ctx, policy.Compile(more)); err != nil { // the fullEvery-th
		t.Fatal(err)
	}
	if n := packets(); n != 0 {
		t.Errorf("%s counted %d packets after apply %d rewrote every chain, want 0", name, n, a.fams[0].applies)
	}
}
