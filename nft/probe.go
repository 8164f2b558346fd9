package nft

import (
	"fmt"

	"github.com/google/nftables"
)

// Probe reports whether the kernel answers nf_tables requests in the
// applier's namespace (false on kernels built without nf_tables, or when
// the process lacks CAP_NET_ADMIN).
func (a *NetlinkApplier) Probe() error {
	if _, err := a.conn.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	return nil
}
