// Package dataplane is the seam between the agent and the kernel: the one
// interface every backend implements (Applier: nft.NetlinkApplier for
// nftables, iptables.Applier for the iptables fallback), the optional
// capabilities a backend may add (JumpKeeper), and the problems a backend
// reports about the parts of a ruleset it could not express (Problem).
//
// Layer: it imports package ruleset only. The backends import it to
// declare what they implement; controller holds a backend through it and
// never depends on one backend's own methods beyond choosing it.
package dataplane

import (
	"context"

	"github.com/weir-cni/weir/ruleset"
)

// Applier makes the kernel of one network namespace hold a ruleset. It
// remembers what it applied, so each Apply writes only what changed (or the
// whole ruleset, as it judges), always as transactions the kernel commits
// whole or not at all.
type Applier interface {
	// Apply makes the kernel hold rs. ctx bounds the kernel work: its
	// deadline and cancellation end a netlink exchange or a restore
	// process. On error the kernel keeps what it held (per transaction:
	// see the backend) and problems is nil. Otherwise problems lists the
	// parts of rs the backend could not express and left out; nftables
	// expresses every ruleset and returns none.
	Apply(ctx context.Context, rs ruleset.Ruleset) (problems []Problem, err error)
	// Counters reads what each named counter of the applied ruleset
	// (ruleset.Ruleset.Counters) has counted, within ctx.
	Counters(ctx context.Context) (map[string]ruleset.CounterValue, error)
	// Close releases the backend's sockets and descriptors; the kernel
	// keeps the ruleset.
	Close() error
}

// JumpKeeper is an Applier whose hooks other programs can push down: with
// iptables, kube-proxy and others insert rules above weir's jumps in the
// built-in chains. (nftables needs none: weir's base chains run whatever
// other tables on the same hook accept.)
type JumpKeeper interface {
	// KeepJumpsFirst moves weir's jumps back to the top of the built-in
	// chains and returns the chains it repaired.
	KeepJumpsFirst(ctx context.Context) ([]string, error)
}
