package controller

import (
	"context"
	"fmt"

	"github.com/weir-cni/weir/nft"
	"github.com/weir-cni/weir/nft/iptables"
)

// Backends the agent can program.
const (
	BackendAuto     = "auto"
	BackendNFTables = "nftables"
	BackendIPTables = "iptables"
)

// NFTApplier adapts nft.NetlinkApplier to the Applier interface.
type NFTApplier struct{ *nft.NetlinkApplier }

// Apply programs rs in one netlink transaction.
func (n NFTApplier) Apply(_ context.Context, rs nft.Ruleset) error { return n.NetlinkApplier.Apply(rs) }

// NewApplier opens the backend named by name in the current network
// namespace. With "auto" it uses nftables, falling back to iptables-legacy
// when the kernel has no nf_tables (iptables-nft would fail there too).
func NewApplier(ctx context.Context, name string) (Applier, string, error) {
	switch name {
	case BackendNFTables, BackendAuto:
		a, err := nft.NewNetlinkApplier("")
		if err == nil {
			if err = a.Probe(); err == nil {
				removeIPTables(ctx)
				return NFTApplier{a}, BackendNFTables, nil
			}
			_ = a.Close()
		}
		if name == BackendNFTables {
			return nil, "", fmt.Errorf("nftables backend: %w", err)
		}
		ia, ierr := iptables.New(iptables.WithMode(iptables.ModeLegacy))
		if ierr != nil {
			return nil, "", fmt.Errorf("nftables unavailable (%v), iptables unavailable: %w", err, ierr)
		}
		return ia, BackendIPTables, nil
	case BackendIPTables:
		ia, err := iptables.New()
		if err != nil {
			return nil, "", fmt.Errorf("iptables backend: %w", err)
		}
		return ia, BackendIPTables, nil
	}
	return nil, "", fmt.Errorf("unknown backend %q: want auto, nftables or iptables", name)
}

// removeIPTables deletes weir's iptables chains left by an earlier run with
// the iptables backend, so they do not keep enforcing stale policy next to
// the nftables table. Best effort: a host without iptables has none.
func removeIPTables(ctx context.Context) {
	ia, err := iptables.New()
	if err != nil {
		return
	}
	_ = ia.Remove(ctx)
}
