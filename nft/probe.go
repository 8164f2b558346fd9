package nft

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/weir-cni/weir/ruleset"
	"golang.org/x/sys/unix"
)

// Probe reports whether the kernel answers nf_tables requests in the
// applier's namespace (false on kernels built without nf_tables, or when
// the process lacks CAP_NET_ADMIN). Unsupported tells the two apart.
func (a *NetlinkApplier) Probe(ctx context.Context) error {
	err := a.query(ctx, func(c *nftables.Conn) error {
		_, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		return err
	})
	if err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	return nil
}

// Unsupported reports whether err, from NewNetlinkApplier or Probe, says
// that the kernel has no nf_tables: no nfnetlink at all (socket:
// EPROTONOSUPPORT), no nf_tables subsystem behind it (EINVAL or
// EOPNOTSUPP, by kernel version), or no inet family (EAFNOSUPPORT). Every
// other failure — no CAP_NET_ADMIN (EPERM), a full socket buffer, a bug —
// means nf_tables is there but did not answer, which a fallback to iptables
// would only hide.
func Unsupported(err error) bool {
	for _, e := range []error{unix.EPROTONOSUPPORT, unix.EINVAL, unix.EOPNOTSUPP, unix.EAFNOSUPPORT} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// RemoveTable deletes the table inet weir if the namespace holds one (one
// left by an earlier run with the nftables backend) and reports whether it
// did, within ctx.
func (a *NetlinkApplier) RemoveTable(ctx context.Context) (bool, error) {
	removed := false
	err := a.query(ctx, func(c *nftables.Conn) error {
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			return fmt.Errorf("list nftables tables: %w", err)
		}
		for _, t := range tables {
			if t.Name != ruleset.TableName {
				continue
			}
			c.DelTable(t)
			if err := c.Flush(); err != nil {
				return fmt.Errorf("delete table inet %s: %w", ruleset.TableName, err)
			}
			removed = true
		}
		return nil
	})
	return removed, err
}
