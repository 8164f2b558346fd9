package controller

import (
	"context"
	"fmt"

	"github.com/weir-cni/weir/nft"
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
// namespace. With "auto" it uses nftables, falling back to iptables when the
// kernel has no nf_tables.
func NewApplier(name string) (Applier, string, error) {
	switch name {
	case BackendNFTables, BackendAuto:
		a, err := nft.NewNetlinkApplier("")
		if err == nil {
			if err = a.Probe(); err == nil {
				return NFTApplier{a}, BackendNFTables, nil
			}
			_ = a.Close()
		}
		if name == BackendNFTables {
			return nil, "", fmt.Errorf("nftables backend: %w", err)
		}
		return nil, "", fmt.Errorf("nftables unavailable (%v) and the iptables backend is not built yet", err)
	case BackendIPTables:
		return nil, "", fmt.Errorf("the iptables backend is not built yet")
	}
	return nil, "", fmt.Errorf("unknown backend %q: want auto, nftables or iptables", name)
}
