package main

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

// backend is one configuration of the node namespace. Before a round, every
// backend but the measured one is switched off, then that one on.
type backend interface {
	// on makes the node enforce the ruleset through this backend and
	// returns how long the kernel took to accept it.
	on(ctx context.Context) (time.Duration, error)
	// off leaves no hook of this backend in the node namespace.
	off(ctx context.Context) error
	Close() error
}

// newIptables opens the iptables backend for the node namespace at
// nodePath. It is nil when this binary was built without it (see
// iptables.go).
var newIptables func(nodePath string, rs ruleset.Ruleset) (backend, error)

// iptablesMissing says why newIptables is nil.
var iptablesMissing = "this binary was built without the iptables backend"

// none is the baseline: no table hooked anywhere.
type none struct{}

func (none) on(context.Context) (time.Duration, error) { return 0, nil }
func (none) off(context.Context) error                 { return nil }
func (none) Close() error                              { return nil }

// nftBackend is weir's nftables backend. By default it applies the full
// table once and then switches it on and off by adding and deleting its
// base chains, incrementally as the agent would: off, the table holds
// only regular chains and sets, which no packet ever reaches, and no rule
// holds conntrack or NAT in the namespace. With full set, on applies the
// whole table in one transaction and off deletes the table.
type nftBackend struct {
	a        *nft.NetlinkApplier
	path     string
	full     bool
	rs, bare ruleset.Ruleset
	// sync is the time of the first full apply.
	sync time.Duration
	// hooks counts the base chains on switches on and off.
	hooks int
	// learner, when set, writes learned into the table after each full
	// apply, which starts from an empty table (see fillChecked); learns
	// are the times it took.
	learner *nft.Learner
	learned learned
	learns  []time.Duration
}

func newNft(ctx context.Context, nodePath string, rs ruleset.Ruleset, full bool) (*nftBackend, error) {
	a, err := nft.NewNetlinkApplier(nodePath)
	if err != nil {
		return nil, err
	}
	if err := a.Probe(ctx); err != nil {
		return nil, errors.Join(err, a.Close())
	}
	b := &nftBackend{a: a, path: nodePath, full: full, rs: rs, bare: rs}
	b.bare.Chains = nil
	for _, c := range rs.Chains {
		if c.Base == nil {
			b.bare.Chains = append(b.bare.Chains, c)
		} else {
			b.hooks++
		}
	}
	t0 := time.Now()
	if err := a.ApplyFull(ctx, rs); err != nil {
		return nil, errors.Join(fmt.Errorf("full apply: %w", err), a.Close())
	}
	b.sync = time.Since(t0)
	return b, nil
}

func (b *nftBackend) on(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	var err error
	if b.full {
		err = b.a.ApplyFull(ctx, b.rs)
	} else {
		_, err = b.a.Apply(ctx, b.rs)
	}
	took := time.Since(t0)
	if err == nil && b.full && b.learner != nil {
		err = b.learn()
	}
	return took, err
}

func (b *nftBackend) off(ctx context.Context) error {
	if b.full {
		return deleteTables(b.path, func(t *nftables.Table) bool { return isWeir(t) })
	}
	if _, err := b.a.Apply(ctx, b.bare); err != nil {
		return err
	}
	return checkNoBaseChains(b.path, isWeir)
}

func (b *nftBackend) Close() error {
	var err error
	if b.learner != nil {
		err = b.learner.Close()
	}
	return errors.Join(err, b.a.Close())
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
