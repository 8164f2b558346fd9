package datapath

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"

	"github.com/weir-cni/weir/internal/testkit"
)

// Config is one side of a comparison: a backend on a testbed.
type Config struct {
	Backend
	Samples
	Bed *Testbed
	// Enforces says the denied port must be dropped; a configuration
	// that does not enforce is switched on only once no table of its node
	// has a base chain.
	Enforces bool
	Setup    time.Duration // the first full apply
	Note     string        // how setup was done
}

// Rounds measures every configuration rounds times, interleaved, each
// measurement lasting d.
func Rounds(ctx context.Context, cfgs []*Config, rounds int, d time.Duration) error {
	for r := range rounds {
		var line []string
		// Rotate who goes first, so drift in the machine hits all alike.
		for k := range cfgs {
			cf := cfgs[(r+k)%len(cfgs)]
			if err := round(ctx, cfgs, cf, d); err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, cf.Name, err)
			}
			n := len(cf.Gbps) - 1
			line = append(line, fmt.Sprintf("%s %.2f Gbit/s %.1f µs %.0f conn/s", cf.Name, cf.Gbps[n], cf.P50[n], cf.Conns[n]))
		}
		fmt.Printf("round %d/%d: %s\n", r+1, rounds, strings.Join(line, " | "))
	}
	return nil
}

// switchTo turns the other configurations of cf's node off, then cf on,
// and returns how long cf took to apply. A configuration that does not
// enforce is turned off too, first (it is still on when it was the last
// switched on in its node, as when its node holds configurations of
// fewer rounds' turns than the others), so that the check that no table
// of its node is hooked covers its own.
func switchTo(ctx context.Context, cfgs []*Config, cf *Config) (time.Duration, error) {
	for i := len(cfgs) - 1; i >= 0; i-- {
		if cfgs[i].Bed != cf.Bed || (cfgs[i] == cf && cf.Enforces) {
			continue
		}
		if err := cfgs[i].Off(ctx); err != nil {
			return 0, fmt.Errorf("switch %s off: %w", cfgs[i].Name, err)
		}
	}
	if !cf.Enforces {
		if err := checkNoBaseChains(cf.Bed.node.Path(), func(*nftables.Table) bool { return true }); err != nil {
			return 0, err
		}
	}
	took, err := cf.On(ctx)
	if err != nil {
		return 0, fmt.Errorf("switch %s on: %w", cf.Name, err)
	}
	return took, nil
}

// Warmup switches cf on and measures it once for d, untimed, with the
// probe that proves the table enforces (the denied port gets through only
// to a configuration that does not enforce).
func Warmup(ctx context.Context, cfgs []*Config, cf *Config, d time.Duration) error {
	if _, err := switchTo(ctx, cfgs, cf); err != nil {
		return err
	}
	_, err := testkit.ProbeTCP(cf.Bed.client, netip.MustParseAddr(ServerIP), DeniedPort)
	switch {
	case cf.Enforces && err == nil:
		return fmt.Errorf("%s: client -> server port %d got through, but no policy allows it", cf.Name, DeniedPort)
	case !cf.Enforces && err != nil:
		return fmt.Errorf("%s: client -> server port %d: %w", cf.Name, DeniedPort, err)
	}
	verdict := "dropped"
	if !cf.Enforces {
		verdict = "open"
	}
	ct0 := conntrackCount(cf.Bed.node)
	var s Samples
	if err := Measure(ctx, cf.Bed.Client, &s, d); err != nil {
		return fmt.Errorf("warm-up %s: %w", cf.Name, err)
	}
	fmt.Printf("warm-up %s: port %d %s, port %d open (%.0f conn/s), node conntrack entries %+d\n",
		cf.Name, DeniedPort, verdict, cf.Bed.Client.Port, s.Conns[0], conntrackCount(cf.Bed.node)-ct0)
	return nil
}

// settle is the pause between switching a configuration on and measuring
// it: a commit leaves the kernel deferred work (freeing the replaced
// ruleset after an RCU grace period, hundreds of milliseconds of it after
// a full apply of a large table) that would otherwise compete with the
// measured traffic for the two CPUs. The agent applies rarely; the steady
// state is what the datapath ratios are about.
const settle = 500 * time.Millisecond

func round(ctx context.Context, cfgs []*Config, cf *Config, d time.Duration) error {
	took, err := switchTo(ctx, cfgs, cf)
	if err != nil {
		return err
	}
	if cf.Enforces {
		cf.Applies = append(cf.Applies, took)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(settle):
	}
	return Measure(ctx, cf.Bed.Client, &cf.Samples, d)
}

// conntrackCount reads the node namespace's conntrack entry count (-1 when
// unreadable): with no table it must not grow.
func conntrackCount(node ns.NetNS) int {
	n := -1
	_ = node.Do(func(ns.NetNS) error {
		b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
		if err == nil {
			n, err = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		return err
	})
	return n
}

// Measure runs the three measurements once each, for d each, and adds
// them to s.
func Measure(ctx context.Context, cl Client, s *Samples, d time.Duration) error {
	gbps, err := cl.Stream(ctx, d)
	if err != nil {
		return fmt.Errorf("throughput: %w", err)
	}
	rtts, err := cl.Latency(ctx, d)
	if err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	conns, err := cl.ConnRate(ctx, d)
	if err != nil {
		return fmt.Errorf("connection rate: %w", err)
	}
	s.add(gbps, rtts, conns)
	return nil
}

// Loadavg is the 1, 5 and 15 minute load average of the machine.
func Loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}
