package controller

import (
	"context"
	"time"
)

// JumpKeeper is a backend whose hooks other programs can push down: with
// iptables, kube-proxy and others insert rules above weir's jumps in the
// built-in chains. (nftables needs none: weir's base chains run whatever
// other tables on the same hook accept.)
type JumpKeeper interface {
	// KeepJumpsFirst moves weir's jumps back to the top of the built-in
	// chains and returns the chains it repaired.
	KeepJumpsFirst(ctx context.Context) ([]string, error)
}

// DefaultJumpCheckInterval is how often the agent checks, with a
// JumpKeeper backend, that its jumps are still first. Apply checks too.
const DefaultJumpCheckInterval = 5 * time.Second

// keepJumps calls k every interval until ctx ends, logging and counting
// each repair. It never blocks a sync for long: the backend holds its lock
// only while it lists the hooked chains (and restores, when it repairs).
func (a *Agent) keepJumps(ctx context.Context, k JumpKeeper, interval time.Duration) {
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
