package controller

import (
	"context"
	"time"

	"github.com/weir-cni/weir/dataplane"
)

// DefaultJumpCheckInterval is how often the agent checks, with a
// dataplane.JumpKeeper backend, that its jumps are still first. Apply
// checks too.
const DefaultJumpCheckInterval = 5 * time.Second

// keepJumps calls k every interval until ctx ends, logging and counting
// each repair. It never blocks a sync for long: the backend holds its lock
// only while it lists the hooked chains (and restores, when it repairs).
func (a *Agent) keepJumps(ctx context.Context, k dataplane.JumpKeeper, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		moved, err := k.KeepJumpsFirst(ctx)
		for _, c := range moved {
			a.Log.Warn("another program put a rule above weir's jump; moved the jump back to position 1", "chain", c)
			a.Metrics.observeJumpRepair(c)
		}
		if err != nil && ctx.Err() == nil {
			a.Log.Error("check that weir's jumps are first", "err", err)
		}
	}
}
