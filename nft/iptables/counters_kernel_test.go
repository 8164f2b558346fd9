//go:build integration

package iptables

import (
	"context"
	"sync"
	"testing"

	"github.com/weir-cni/weir/examples"
	"github.com/weir-cni/weir/nft"
)

// TestCountersDuringApplies reads the counters in a loop while another
// goroutine applies two rulesets in turn, as a metrics scrape during syncs
// does. The rulesets lay counted rules out differently, so a read between an
// Apply's restore and its record of what it wrote would find chains that do
// not hold the rules it expects, and report an error.
func TestCountersDuringApplies(t *testing.T) {
	tp := newTopology(t, "cd")
	a, err := New(WithNetNS(tp.nodePath), WithMode(ModeLegacy))
	if err != nil {
		t.Fatal(err)
	}
	rulesets := []nft.Ruleset{
		nft.Compile(kernelSnapshot(t, examples.TalkPolicies)),
		nft.Compile(kernelSnapshot(t, kernelScenarios[len(kernelScenarios)-1].policies)),
	}
	ctx := context.Background()
	if err := a.Apply(ctx, rulesets[0]); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads int
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
			if _, err := a.Counters(); err != nil {
				readErr = err
				return
			}
			reads++
		}
	}()
	for i := range 40 {
		if err := a.Apply(ctx, rulesets[(i+1)%2]); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if readErr != nil {
		t.Errorf("Counters during applies: %v", readErr)
	}
	if reads < 5 {
		t.Errorf("only %d reads ran during 40 applies", reads)
	}
	t.Logf("%d reads during 40 applies", reads)
}
