package main

import (
	"context"
	"fmt"
	"time"

	"github.com/weir-cni/weir/internal/datapath"
	"github.com/weir-cni/weir/iptables"
	"github.com/weir-cni/weir/ruleset"
)

// Remove this file to build the benchmark without the iptables backend.
func init() { newIptables = newIptablesBackend }

// iptablesBackend is weir's iptables backend on a node of its own: the
// first on applies the whole ruleset (one iptables-restore), which takes
// far too long to repeat each round; later calls and off do nothing.
type iptablesBackend struct {
	a       *iptables.Applier
	rs      ruleset.Ruleset
	applied bool
}

func newIptablesBackend(nodePath string, rs ruleset.Ruleset) (datapath.Backend, error) {
	a, err := iptables.New(iptables.WithNetNS(nodePath), iptables.WithoutIPv6())
	if err != nil {
		return nil, err
	}
	return &iptablesBackend{a: a, rs: rs}, nil
}

// On applies the ruleset the first time.
func (b *iptablesBackend) On(ctx context.Context) (time.Duration, error) {
	if b.applied {
		return 0, nil
	}
	t0 := time.Now()
	if _, err := b.a.Apply(ctx, b.rs); err != nil {
		return 0, fmt.Errorf("apply (%s): %w", b.a.Mode(), err)
	}
	b.applied = true
	return time.Since(t0), nil
}

// Off does nothing: the ruleset stays on its node.
func (b *iptablesBackend) Off(context.Context) error { return nil }

// Close does nothing.
func (b *iptablesBackend) Close() error { return nil }
