package datapath

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/nft"
	"github.com/weir-cni/weir/ruleset"
)

// Backend is one configuration of a node namespace. Before a round,
// every backend of the measured one's node but it is switched off, then
// that one on.
type Backend interface {
	// On makes the node enforce the ruleset through this backend and
	// returns how long the kernel took to accept it.
	On(ctx context.Context) (time.Duration, error)
	// Off leaves no hook of this backend in the node namespace.
	Off(ctx context.Context) error
	Close() error
}

// None is the baseline: no table hooked anywhere.
type None struct{}

// On does nothing.
func (None) On(context.Context) (time.Duration, error) { return 0, nil }

// Off does nothing.
func (None) Off(context.Context) error { return nil }

// Close does nothing.
func (None) Close() error { return nil }

// Nft is weir's nftables backend. By default it applies the full table
// once and then switches it on and off by adding and deleting its base
// chains, incrementally as the agent would: off, the table holds only
// regular chains and sets, which no packet ever reaches, and no rule holds
// conntrack or NAT in the namespace. With full set, On applies the whole
// table in one transaction and Off deletes the table.
type Nft struct {
	// A applies the table.
	A        *nft.NetlinkApplier
	path     string
	full     bool
	rs, bare ruleset.Ruleset
	// Sync is the time of the first full apply.
	Sync time.Duration
	// Hooks counts the base chains on switches on and off.
	Hooks int
	// AfterFull, when set, runs after each full apply by On, which starts
	// from an empty table (to write what the table learns at run time).
	AfterFull func() error
}

// NewNft applies rs in the namespace at nodePath, whole, and returns the
// backend that switches it (full: see Nft).
func NewNft(ctx context.Context, nodePath string, rs ruleset.Ruleset, full bool) (*Nft, error) {
	a, err := nft.NewNetlinkApplier(nodePath)
	if err != nil {
		return nil, err
	}
	if err := a.Probe(ctx); err != nil {
		return nil, errors.Join(err, a.Close())
	}
	b := &Nft{A: a, path: nodePath, full: full, rs: rs, bare: rs}
	b.bare.Chains = nil
	for _, c := range rs.Chains {
		if c.Base == nil {
			b.bare.Chains = append(b.bare.Chains, c)
		} else {
			b.Hooks++
		}
	}
	t0 := time.Now()
	if err := a.ApplyFull(ctx, rs); err != nil {
		return nil, errors.Join(fmt.Errorf("full apply: %w", err), a.Close())
	}
	b.Sync = time.Since(t0)
	return b, nil
}

// On applies the table, or its base chains.
func (b *Nft) On(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	var err error
	if b.full {
		err = b.A.ApplyFull(ctx, b.rs)
	} else {
		_, err = b.A.Apply(ctx, b.rs)
	}
	took := time.Since(t0)
	if err == nil && b.full && b.AfterFull != nil {
		err = b.AfterFull()
	}
	return took, err
}

// Off deletes the table, or its base chains.
func (b *Nft) Off(ctx context.Context) error {
	if b.full {
		return deleteTables(b.path, func(t *nftables.Table) bool { return isWeir(t) })
	}
	if _, err := b.A.Apply(ctx, b.bare); err != nil {
		return err
	}
	return checkNoBaseChains(b.path, isWeir)
}

// Close closes the applier.
func (b *Nft) Close() error { return b.A.Close() }

// ConntrackOnly is the least table that filters statefully: one forward
// chain whose only rule accepts established and related packets. It holds
// conntrack in the namespace and nothing else (no NAT, no lookup): the
// floor of any stateful filtering in netfilter.
func ConntrackOnly() ruleset.Ruleset {
	return ruleset.Ruleset{Chains: []ruleset.Chain{{
		Name: "forward",
		Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookForward},
		Rules: []ruleset.Rule{{
			Matches: []ruleset.Match{{Kind: ruleset.MatchCtState, CtStates: ruleset.CtEstablished | ruleset.CtRelated}},
			Verdict: ruleset.Verdict{Kind: ruleset.VerdictAccept},
		}},
	}}}
}

func isWeir(t *nftables.Table) bool {
	return t.Family == nftables.TableFamilyINet && t.Name == ruleset.TableName
}

// conn opens a one-shot nftables connection into the namespace at path;
// call the returned close when done.
func conn(path string) (*nftables.Conn, func(), error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("nftables netlink: %w", err)
	}
	return c, func() { unix.Close(fd) }, nil
}

// deleteTables deletes the node namespace's nftables tables that match
// (all of them ours: the namespace is the benchmark's own; iptables-nft
// keeps its tables there too) and checks that none is left.
func deleteTables(path string, match func(*nftables.Table) bool) error {
	c, done, err := conn(path)
	if err != nil {
		return err
	}
	defer done()
	count := func() (int, error) {
		tables, err := c.ListTables()
		if err != nil {
			return 0, fmt.Errorf("list tables: %w", err)
		}
		n := 0
		for _, t := range tables {
			if match(t) {
				n++
				c.DelTable(t)
			}
		}
		return n, nil
	}
	n, err := count()
	if err != nil || n == 0 {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete tables: %w", err)
	}
	if n, err = count(); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%d nftables tables left in the node namespace after deleting them", n)
	}
	return nil
}

// checkNoBaseChains fails when a matching table of the node namespace
// still has a chain on a hook.
func checkNoBaseChains(path string, match func(*nftables.Table) bool) error {
	c, done, err := conn(path)
	if err != nil {
		return err
	}
	defer done()
	chains, err := c.ListChains()
	if err != nil {
		return fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Hooknum != nil && match(ch.Table) {
			return fmt.Errorf("chain %s of table %s is still hooked", ch.Name, ch.Table.Name)
		}
	}
	return nil
}
