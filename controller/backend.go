package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/iptables"
	"github.com/weir-cni/weir/nft"
	"github.com/weir-cni/weir/ruleset"
)

// Backends the agent can program.
const (
	BackendAuto     = "auto"
	BackendNFTables = "nftables"
	BackendIPTables = "iptables"
)

// NewApplier opens the backend named by name in the current network
// namespace. With "auto" it uses nftables, and falls back to
// iptables-legacy only when the kernel has no nf_tables (iptables-nft
// would fail there too). When nf_tables is there but does not answer (no
// CAP_NET_ADMIN, say), auto fails rather than switch backends behind the
// operator's back: --backend iptables chooses iptables on purpose.
// NewApplier changes nothing in the kernel; see RemoveStale.
func NewApplier(ctx context.Context, name string) (dataplane.Applier, string, error) {
	return newApplier(name, func() (dataplane.Applier, error) { return openNFTables(ctx) }, func() (dataplane.Applier, error) {
		return iptables.New(iptables.WithMode(iptables.ModeLegacy))
	}, func() (dataplane.Applier, error) { return iptables.New() })
}

// openNFTables opens the nftables backend and checks, within ctx, that
// the kernel answers.
func openNFTables(ctx context.Context) (dataplane.Applier, error) {
	a, err := nft.NewNetlinkApplier("")
	if err != nil {
		return nil, err
	}
	if err := a.Probe(ctx); err != nil {
		return nil, errors.Join(err, a.Close())
	}
	return a, nil
}

// newApplier is NewApplier's decision, given how to open each backend.
func newApplier(name string, openNFT, openLegacy, openIPT func() (dataplane.Applier, error)) (dataplane.Applier, string, error) {
	switch name {
	case BackendNFTables, BackendAuto:
		a, err := openNFT()
		if err == nil {
			return a, BackendNFTables, nil
		}
		if name == BackendNFTables {
			return nil, "", fmt.Errorf("nftables backend: %w", err)
		}
		if !nft.Unsupported(err) {
			return nil, "", fmt.Errorf("backend auto: the kernel has nf_tables but it did not answer; not falling back to iptables (--backend iptables chooses it): %w", err)
		}
		ia, ierr := openLegacy()
		if ierr != nil {
			return nil, "", fmt.Errorf("backend auto: no nf_tables (%v), and iptables-legacy unavailable: %w", err, ierr)
		}
		return ia, BackendIPTables, nil
	case BackendIPTables:
		ia, err := openIPT()
		if err != nil {
			return nil, "", fmt.Errorf("iptables backend: %w", err)
		}
		return ia, BackendIPTables, nil
	}
	return nil, "", fmt.Errorf("unknown backend %q: want auto, nftables or iptables", name)
}

// RemoveStale deletes what an earlier run with another backend left in the
// current network namespace, so that it does not go on enforcing stale
// policy next to a (the backend in use): with nftables, weir's chains and
// jumps in iptables, legacy and nf_tables flavours; with iptables, the
// table inet weir and weir's chains of the other flavour. Call it once the
// first ruleset is applied: until then the stale rules are all that
// enforces policy. It reports what it removed.
func RemoveStale(ctx context.Context, a dataplane.Applier) ([]string, error) {
	inUse := iptables.Mode("none")
	var removed []string
	var errs []error
	switch a := a.(type) {
	case *nft.NetlinkApplier:
	case *iptables.Applier:
		inUse = a.Mode()
		done, err := removeNFTTable(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		if done {
			removed = append(removed, "table inet "+ruleset.TableName)
		}
	default:
		return nil, nil
	}
	for _, m := range []iptables.Mode{iptables.ModeLegacy, iptables.ModeNFT} {
		if m == inUse || (m == iptables.ModeLegacy && !legacyTablesLoaded()) {
			continue
		}
		ia, err := iptables.New(iptables.WithMode(m))
		if err != nil {
			continue // no binaries of that flavour: none of its chains either
		}
		if has, err := ia.HasChains(); err != nil || !has {
			continue
		}
		if err := ia.Remove(ctx); err != nil {
			errs = append(errs, fmt.Errorf("remove weir's iptables-%s chains: %w", m, err))
			continue
		}
		removed = append(removed, "iptables-"+string(m)+" chains")
	}
	return removed, errors.Join(errs...)
}

// removeNFTTable deletes the table inet weir; on a kernel without
// nf_tables there is none.
func removeNFTTable(ctx context.Context) (bool, error) {
	a, err := nft.NewNetlinkApplier("")
	if err != nil {
		if nft.Unsupported(err) {
			return false, nil
		}
		return false, fmt.Errorf("remove table inet %s: %w", ruleset.TableName, err)
	}
	defer a.Close()
	done, err := a.RemoveTable(ctx)
	if err != nil && nft.Unsupported(err) {
		return false, nil
	}
	return done, err
}

// legacyTablesLoaded reports whether the calling thread's network
// namespace has any iptables-legacy table: without one, weir has no legacy
// chains, and listing them would only load the legacy modules.
func legacyTablesLoaded() bool {
	for _, f := range []string{"ip_tables_names", "ip6_tables_names"} {
		b, err := os.ReadFile("/proc/thread-self/net/" + f)
		if err == nil && strings.TrimSpace(string(b)) != "" {
			return true
		}
	}
	return false
}

// removeStale runs the agent's RemoveStale and logs the result; a failure
// leaves the stale rules in place and does not fail the sync.
func (a *Agent) removeStale(ctx context.Context) {
	removed, err := a.RemoveStale(ctx)
	for _, r := range removed {
		a.Log.Warn("removed what an earlier run with another backend left", "removed", r)
	}
	if err != nil {
		a.Log.Error("remove what an earlier run with another backend left; it may still enforce stale policy", "err", err)
	}
}
