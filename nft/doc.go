// Package nft is weir's nftables dataplane: it touches the kernel.
//
// NetlinkApplier writes a ruleset.Ruleset into the table `inet weir` through
// github.com/google/nftables, one netlink batch (one nf_tables transaction)
// per Apply: the whole table on the first call, ruleset.Diff afterwards.
// exprs.go translates the ruleset into google/nftables values without
// touching the kernel. The google/nftables workarounds live here: the batch
// sent on weir's own socket (batch.go), the typeof user data of the sets
// keyed by a rule id (typeof.go), the element-per-message cap (netlink.go).
//
// Layer: it imports package ruleset only, never the compiler (policy).
package nft

import "github.com/weir-cni/weir/ruleset"

// Applier is what the agent needs from a dataplane backend: make the kernel
// hold a ruleset, atomically.
type Applier interface {
	Apply(ruleset.Ruleset) error
	Close() error
}

var _ Applier = (*NetlinkApplier)(nil)
