//go:build integration

package datapath

import (
	"context"
	"testing"

	"github.com/weir-cni/weir/internal/testkit"
)

// A configuration that does not enforce can be switched on twice in a
// row in its node (the floor node of bench-api-to-kernel's peer holds two
// of the four configurations, so a round can start with the one that
// ended the last): switchTo turns it off before checking that no table of
// its node is hooked, instead of finding its own.
func TestSwitchToTheConfigurationAlreadyOn(t *testing.T) {
	ctx := context.Background()
	floor := &Testbed{cluster: &cluster{node: testkit.NewTestNS(t, "weirdp-t-")}}
	other := &Testbed{cluster: &cluster{node: testkit.NewTestNS(t, "weirdp-t-")}}
	ct, err := NewNft(ctx, floor.node.Path(), ConntrackOnly(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	cfgs := []*Config{
		{Backend: None{}, Samples: Samples{Name: "none"}, Bed: floor},
		{Backend: ct, Samples: Samples{Name: "conntrack"}, Bed: floor},
		{Backend: None{}, Samples: Samples{Name: "elsewhere"}, Bed: other, Enforces: true},
	}
	for i, cf := range []*Config{cfgs[0], cfgs[1], cfgs[2], cfgs[1], cfgs[0]} {
		if _, err := switchTo(ctx, cfgs, cf); err != nil {
			t.Fatalf("switch %d, to %s: %v", i, cf.Name, err)
		}
	}
	if err := checkNoBaseChains(floor.node.Path(), isWeir); err != nil {
		t.Errorf("after switching to none: %v", err)
	}
}
