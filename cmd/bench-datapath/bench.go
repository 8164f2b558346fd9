package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"

	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// testbed is a node with its two pods, the server thread and the client.
type testbed struct {
	*cluster
	srv *server
	cl  client
}

func newTestbed(ctx context.Context, plugin string, o options) (*testbed, error) {
	c, err := newCluster(ctx, plugin)
	if err != nil {
		return nil, err
	}
	srv, err := startServer(c.server.Path(), o.serverCPU)
	if err != nil {
		return nil, errors.Join(err, c.Close())
	}
	fmt.Printf("node %s: server %s (%s/bench-server %s), client %s (%s/bench-client %s)\n",
		c.node.Name, c.server.Name, serverNS, serverIP, c.client.Name, clientNS, clientIP)
	return &testbed{cluster: c, srv: srv, cl: client{nsPath: c.client.Path(), cpu: o.clientCPU, dst: netip.MustParseAddr(serverIP)}}, nil
}

func (t *testbed) Close() error {
	err := t.srv.Close()
	if f := t.srv.failed.Load(); f > 0 {
		fmt.Printf("note: %d connections ended in an error on the server of %s\n", f, t.node.Name)
	}
	return errors.Join(err, t.cluster.Close())
}

// config is one side of the comparison: a backend on a testbed.
type config struct {
	backend
	samples
	bed      *testbed
	enforces bool          // the denied port must be dropped
	setup    time.Duration // the first full apply
	note     string        // how setup was done
}

func bench(ctx context.Context, o options) (err error) {
	if err := o.validate(); err != nil {
		return err
	}
	fmt.Printf("bench-datapath: %d pods, %d policies, %d cluster policies, %d learned addresses; %d rounds of %s per measurement; client cpu %d, server cpu %d (%d cpus, GOMAXPROCS %d); load average %s\n",
		o.pods, o.policies, o.clusterPolicies, o.learned, o.rounds, o.duration, o.clientCPU, o.serverCPU, runtime.NumCPU(), runtime.GOMAXPROCS(0), loadavg())
	defer func() {
		fmt.Printf("load average at the end: %s (other work on these cpus widens the spread)\n", loadavg())
	}()
	snap := snapshot(o.pods, o.policies, o.clusterPolicies, o.learned)
	local := 0
	for _, p := range snap.Pods {
		if p.Node == snap.Node.Name {
			local++
		}
	}
	t0 := time.Now()
	rs := policy.Compile(snap)
	compile := time.Since(t0)
	l, err := learnedPairs(rs, o.learned)
	if err != nil {
		return err
	}
	p, err := checkPath(rs, l)
	if err != nil {
		return fmt.Errorf("generated cluster does not exercise the policy: %w", err)
	}
	fmt.Printf("ruleset: %d local pods (every policy selects some); %d chains, %d sets, %d elements; compile %s\n",
		local, len(rs.Chains), len(rs.Sets), elems(rs), ms(compile))
	fmt.Printf("new connection %s -> %s:%d walks egress %s, ingress %s (the last of each allows); port %d is dropped\n",
		clientIP, serverIP, testPort, strings.Join(p.egress, ", "), strings.Join(p.ingress, ", "), deniedPort)
	if len(l.pairs) > 0 {
		fmt.Printf("learned: %d pairs in set %s of %s's domainNames rule, over its %d local pods, client . server among them: the egress of the test connection is allowed by that set only (its next rule denies it)\n",
			len(l.pairs), l.set, learnedPolicyName, l.pods)
	}

	tmp, err := os.MkdirTemp("", "weir-dataplane-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()
	plugin, err := plugin(ctx, o.weir, tmp)
	if err != nil {
		return err
	}
	var cfgs []*config
	defer func() {
		for i := len(cfgs) - 1; i >= 0; i-- {
			err = errors.Join(err, cfgs[i].Close())
			if i == 0 || cfgs[i].bed != cfgs[i-1].bed {
				err = errors.Join(err, cfgs[i].bed.Close())
			}
		}
	}()
	if cfgs, err = configs(ctx, plugin, snap, rs, l, o); err != nil {
		return err
	}
	fmt.Printf("full sync: compile %s", ms(compile))
	for _, cf := range cfgs[1:] {
		fmt.Printf(", apply %s %s (%s)", cf.name, ms(cf.setup), cf.note)
	}
	fmt.Println()

	// Warm-up, untimed: every configuration once, with the probe that
	// proves the table enforces (the denied port gets through only with
	// no table).
	for _, cf := range cfgs {
		if err := warmup(ctx, cfgs, cf, o.duration/3); err != nil {
			return err
		}
	}
	if err := rounds(ctx, cfgs, o); err != nil {
		return err
	}
	all := make([]*samples, len(cfgs))
	for i, cf := range cfgs {
		all[i] = &cf.samples
	}
	report(os.Stdout, all, o.verbose)
	nb := cfgs[1].backend.(*nftBackend)
	if o.fullApply {
		fmt.Printf("\nnft: full apply before each round: median %s\n", ms(medianDuration(cfgs[1].applies)))
	} else {
		fmt.Printf("\nnft: switching on before each round (adding the %d base chains to the applied table, one incremental transaction): median %s\n",
			nb.hooks, ms(medianDuration(cfgs[1].applies)))
	}
	if len(nb.learns) > 0 {
		fmt.Printf("nft: learning the %d pairs through the Learner (one transaction each; %s): median %s\n",
			len(l.pairs), learnedWhen(o.fullApply), ms(medianDuration(nb.learns)))
	}
	return nil
}

// rounds measures every configuration o.rounds times, interleaved.
func rounds(ctx context.Context, cfgs []*config, o options) error {
	for r := range o.rounds {
		var line []string
		// Rotate who goes first, so drift in the machine hits all alike.
		for k := range cfgs {
			cf := cfgs[(r+k)%len(cfgs)]
			if err := round(ctx, cfgs, cf, o.duration); err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, cf.name, err)
			}
			n := len(cf.gbps) - 1
			line = append(line, fmt.Sprintf("%s %.2f Gbit/s %.1f µs %.0f conn/s", cf.name, cf.gbps[n], cf.p50[n], cf.conns[n]))
		}
		fmt.Printf("round %d/%d: %s\n", r+1, o.rounds, strings.Join(line, " | "))
	}
	return nil
}

// configs builds the testbeds and returns the baseline and nftables on the
// first and, when asked and built in, iptables on a second one: applying
// it takes far too long to switch it on and off between rounds. The
// second node's baseline is printed to show the two nodes alike. rs is
// snap compiled, and l the pairs to learn into its table.
func configs(ctx context.Context, plugin string, snap policy.Snapshot, rs ruleset.Ruleset, l learned, o options) ([]*config, error) {
	bed, err := newTestbed(ctx, plugin, o)
	if err != nil {
		return nil, err
	}
	cfgs := []*config{{backend: none{}, samples: samples{name: "none"}, bed: bed}}
	var (
		ipt  *config
		iptc = make(chan error, 1)
	)
	switch {
	case !o.iptables:
		fmt.Println("iptables backend: not measured (pass -iptables)")
	case newIptables == nil:
		fmt.Printf("iptables backend: not measured: %s; measuring nftables only\n", iptablesMissing)
	default:
		if ipt, err = iptablesConfig(ctx, plugin, rs, o); err != nil {
			return cfgs, err
		}
		// Apply in the background, while nftables does its full sync.
		go func() {
			var err error
			ipt.setup, err = ipt.on(ctx)
			iptc <- err
		}()
	}
	// Two tables take turns in one namespace only by full applies: each
	// applier would otherwise diff against a table the other replaced.
	nb, err := newNft(ctx, bed.node.Path(), rs, o.fullApply)
	if err == nil {
		cfgs = append(cfgs, &config{backend: nb, samples: samples{name: "nft"}, bed: bed, enforces: true,
			setup: nb.sync, note: "one transaction"})
	} else {
		err = fmt.Errorf("nftables backend: %w", err)
	}
	if err == nil && len(l.pairs) > 0 {
		err = nb.fillChecked(bed.cl, l)
	}
	if err == nil && o.breakdown {
		s := withoutLearned(snap)
		s.Policies = nil
		var bare *nftBackend
		if bare, err = newNft(ctx, bed.node.Path(), policy.Compile(s), true); err == nil {
			cfgs = append(cfgs, &config{backend: bare, samples: samples{name: "nft-bare"}, bed: bed,
				setup: bare.sync, note: "no policy: conntrack, NAT, skeleton"})
		} else {
			err = fmt.Errorf("nftables backend without policies: %w", err)
		}
	}
	if err == nil && o.breakdown {
		var ct *nftBackend
		if ct, err = newNft(ctx, bed.node.Path(), conntrackOnly(), true); err == nil {
			cfgs = append(cfgs, &config{backend: ct, samples: samples{name: "conntrack"}, bed: bed,
				setup: ct.sync, note: "one rule, ct state established,related accept: the floor of stateful filtering"})
		} else {
			err = fmt.Errorf("conntrack-only table: %w", err)
		}
	}
	for _, part := range o.parts {
		if err != nil {
			break
		}
		var (
			pb   *nftBackend
			prs  ruleset.Ruleset
			name = "conntrack+" + part
		)
		if prs, err = withPart(rs, part); err == nil {
			pb, err = newNft(ctx, bed.node.Path(), prs, true)
		}
		if err == nil {
			cfgs = append(cfgs, &config{backend: pb, samples: samples{name: name}, bed: bed,
				setup: pb.sync, note: "the conntrack floor plus weir's " + part + " chain alone"})
		} else {
			err = fmt.Errorf("%s: %w", name, err)
		}
	}
	if ipt != nil {
		cfgs = append(cfgs, ipt)
		if ierr := <-iptc; ierr != nil {
			err = errors.Join(err, fmt.Errorf("iptables backend: %w", ierr))
		}
	}
	return cfgs, err
}

// conntrackOnly is the least table that filters statefully: one forward
// chain whose only rule accepts established and related packets. It holds
// conntrack in the namespace and nothing else (no NAT, no lookup), so its
// ratio to none is what conntrack alone costs; nft-bare / conntrack is then
// NAT plus weir's skeleton.
func conntrackOnly() ruleset.Ruleset {
	return ruleset.Ruleset{Chains: []ruleset.Chain{{
		Name: "forward",
		Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookForward},
		Rules: []ruleset.Rule{{
			Matches: []ruleset.Match{{Kind: ruleset.MatchCtState, CtStates: ruleset.CtEstablished | ruleset.CtRelated}},
			Verdict: ruleset.Verdict{Kind: ruleset.VerdictAccept},
		}},
	}}}
}

// parts name the base chains of weir's table -parts can add, one at a
// time, to the conntrack floor.
var parts = map[string]string{"nat": "postrouting-masq", "spoof": "prerouting-spoof"}

// withPart is the conntrack floor plus the base chain of rs that parts
// names for part, with the sets its rules look up and its counters; an
// error when rs has no such chain (the measurement would be the floor's).
func withPart(rs ruleset.Ruleset, part string) (ruleset.Ruleset, error) {
	ch, ok := rs.Chain(parts[part])
	if !ok {
		return ruleset.Ruleset{}, fmt.Errorf("the table has no chain %s", parts[part])
	}
	out := conntrackOnly()
	out.Chains = append(out.Chains, ch)
	sets, counters := map[string]bool{}, map[string]bool{}
	for _, r := range ch.Rules {
		for _, m := range r.Matches {
			if m.Kind == ruleset.MatchLookup {
				sets[m.Set] = true
			}
		}
		if r.Counter != "" {
			counters[r.Counter] = true
		}
	}
	for _, s := range rs.Sets {
		if sets[s.Name] {
			out.Sets = append(out.Sets, s)
		}
	}
	for _, c := range rs.Counters {
		if counters[c.Name] {
			out.Counters = append(out.Counters, c)
		}
	}
	slices.SortFunc(out.Chains, func(a, b ruleset.Chain) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// iptablesConfig builds the second testbed, measures it once without a
// table, and opens the iptables backend on it.
func iptablesConfig(ctx context.Context, plugin string, rs ruleset.Ruleset, o options) (*config, error) {
	bed, err := newTestbed(ctx, plugin, o)
	if err != nil {
		return nil, err
	}
	var s samples
	if err := measure(ctx, bed.cl, &s, o.duration/3); err != nil {
		return nil, errors.Join(fmt.Errorf("iptables node without a table: %w", err), bed.Close())
	}
	fmt.Printf("node %s without a table: %.2f Gbit/s, %.1f µs, %.0f conn/s\n", bed.node.Name, s.gbps[0], s.p50[0], s.conns[0])
	b, err := newIptables(bed.node.Path(), rs)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("iptables backend: %w", err), bed.Close())
	}
	return &config{backend: b, samples: samples{name: "iptables"}, bed: bed, enforces: true,
		note: "one restore, on its own node, once"}, nil
}

// switchTo turns the other configurations of cf's node off, then cf on,
// and returns how long cf took to apply.
func switchTo(ctx context.Context, cfgs []*config, cf *config) (time.Duration, error) {
	for i := len(cfgs) - 1; i >= 0; i-- {
		if cfgs[i] == cf || cfgs[i].bed != cf.bed {
			continue
		}
		if err := cfgs[i].off(ctx); err != nil {
			return 0, fmt.Errorf("switch %s off: %w", cfgs[i].name, err)
		}
	}
	if !cf.enforces {
		if err := checkNoBaseChains(cf.bed.node.Path(), func(*nftables.Table) bool { return true }); err != nil {
			return 0, err
		}
	}
	took, err := cf.on(ctx)
	if err != nil {
		return 0, fmt.Errorf("switch %s on: %w", cf.name, err)
	}
	return took, nil
}

func warmup(ctx context.Context, cfgs []*config, cf *config, d time.Duration) error {
	if _, err := switchTo(ctx, cfgs, cf); err != nil {
		return err
	}
	_, err := testkit.ProbeTCP(cf.bed.client, netip.MustParseAddr(serverIP), deniedPort)
	switch {
	case cf.enforces && err == nil:
		return fmt.Errorf("%s: client -> server port %d got through, but no policy allows it", cf.name, deniedPort)
	case !cf.enforces && err != nil:
		return fmt.Errorf("%s: client -> server port %d: %w", cf.name, deniedPort, err)
	}
	verdict := "dropped"
	if !cf.enforces {
		verdict = "open"
	}
	ct0 := conntrackCount(cf.bed.node)
	var s samples
	if err := measure(ctx, cf.bed.cl, &s, d); err != nil {
		return fmt.Errorf("warm-up %s: %w", cf.name, err)
	}
	fmt.Printf("warm-up %s: port %d %s, port %d open (%.0f conn/s), node conntrack entries %+d\n",
		cf.name, deniedPort, verdict, testPort, s.conns[0], conntrackCount(cf.bed.node)-ct0)
	return nil
}

// settle is the pause between switching a configuration on and measuring
// it: a commit leaves the kernel deferred work (freeing the replaced
// ruleset after an RCU grace period, hundreds of milliseconds of it after
// a full apply of a large table) that would otherwise compete with the
// measured traffic for the two CPUs. The agent applies rarely; the steady
// state is what the datapath ratios are about.
const settle = 500 * time.Millisecond

func round(ctx context.Context, cfgs []*config, cf *config, d time.Duration) error {
	took, err := switchTo(ctx, cfgs, cf)
	if err != nil {
		return err
	}
	if cf.enforces {
		cf.applies = append(cf.applies, took)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(settle):
	}
	return measure(ctx, cf.bed.cl, &cf.samples, d)
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

// measure runs the three measurements once each.
func measure(ctx context.Context, cl client, s *samples, d time.Duration) error {
	gbps, err := cl.stream(ctx, d)
	if err != nil {
		return fmt.Errorf("throughput: %w", err)
	}
	rtts, err := cl.latency(ctx, d)
	if err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	conns, err := cl.connRate(ctx, d)
	if err != nil {
		return fmt.Errorf("connection rate: %w", err)
	}
	s.add(gbps, rtts, conns)
	return nil
}

// loadavg is the 1, 5 and 15 minute load average of the machine.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func elems(rs ruleset.Ruleset) int {
	n := 0
	for _, s := range rs.Sets {
		n += len(s.Elems)
	}
	return n
}
