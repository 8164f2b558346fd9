// Package nft is weir's NetworkPolicy dataplane model.
//
// Pure part (no clock, no I/O, sorted output): Compile turns a Snapshot of
// the cluster, as seen from one node, into a Ruleset value for the private
// table `inet weir`; a Compiler does the same for a sequence of snapshots,
// recomputing only what changed since the previous one (same output as
// Compile, always); Ruleset.String renders it as `nft -f` text; Trace walks
// it for one packet ("would this be allowed, and by which rule"); Diff
// computes the changes between two rulesets. exprs.go translates the model
// into google/nftables values, also without touching the kernel.
//
// Kernel part: netlink.go's NetlinkApplier writes a Ruleset through
// github.com/google/nftables, one netlink batch (one nf_tables transaction)
// per Apply: the whole table on the first call, Diff afterwards.
//
// See names.go for the chain and set layout.
package nft

import "github.com/weir-cni/weir/ruleset"

// Applier is what the agent needs from a dataplane backend: make the kernel
// hold a ruleset, atomically.
type Applier interface {
	Apply(ruleset.Ruleset) error
	Close() error
}

var _ Applier = (*NetlinkApplier)(nil)
