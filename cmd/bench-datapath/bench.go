package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/weir-cni/weir/internal/datapath"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

func bench(ctx context.Context, o options) (err error) {
	if err := o.validate(); err != nil {
		return err
	}
	fmt.Printf("bench-datapath: %d pods, %d policies, %d cluster policies, %d learned addresses; %d rounds of %s per measurement; client cpu %d, server cpu %d (%d cpus, GOMAXPROCS %d); load average %s\n",
		o.pods, o.policies, o.clusterPolicies, o.learned, o.rounds, o.duration, o.clientCPU, o.serverCPU, runtime.NumCPU(), runtime.GOMAXPROCS(0), datapath.Loadavg())
	defer func() {
		fmt.Printf("load average at the end: %s (other work on these cpus widens the spread)\n", datapath.Loadavg())
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
		local, len(rs.Chains), len(rs.Sets), elems(rs), datapath.MS(compile))
	fmt.Printf("new connection %s -> %s:%d walks egress %s, ingress %s (the last of each allows); port %d is dropped\n",
		datapath.ClientIP, datapath.ServerIP, testPort, strings.Join(p.Egress, ", "), strings.Join(p.Ingress, ", "), datapath.DeniedPort)
	if len(l.pairs) > 0 {
		fmt.Printf("learned: %d pairs in set %s of %s's domainNames rule, over its %d local pods, client . server among them: the egress of the test connection is allowed by that set only (its next rule denies it)\n",
			len(l.pairs), l.set, learnedPolicyName, l.pods)
	}

	tmp, err := os.MkdirTemp("", "weir-dataplane-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()
	plugin, err := datapath.Plugin(ctx, o.weir, tmp)
	if err != nil {
		return err
	}
	var cfgs []*datapath.Config
	defer func() {
		for i := len(cfgs) - 1; i >= 0; i-- {
			err = errors.Join(err, cfgs[i].Close())
			if i == 0 || cfgs[i].Bed != cfgs[i-1].Bed {
				err = errors.Join(err, cfgs[i].Bed.Close())
			}
		}
	}()
	var lr *learning
	cfgs, lr, err = configs(ctx, plugin, snap, rs, l, o)
	if lr != nil {
		defer func() { err = errors.Join(err, lr.Close()) }()
	}
	if err != nil {
		return err
	}
	fmt.Printf("full sync: compile %s", datapath.MS(compile))
	for _, cf := range cfgs[1:] {
		fmt.Printf(", apply %s %s (%s)", cf.Name, datapath.MS(cf.Setup), cf.Note)
	}
	fmt.Println()

	// Warm-up, untimed: every configuration once, with the probe that
	// proves the table enforces (the denied port gets through only with
	// no table).
	for _, cf := range cfgs {
		if err := datapath.Warmup(ctx, cfgs, cf, o.duration/3); err != nil {
			return err
		}
	}
	if err := datapath.Rounds(ctx, cfgs, o.rounds, o.duration); err != nil {
		return err
	}
	all := make([]*datapath.Samples, len(cfgs))
	for i, cf := range cfgs {
		all[i] = &cf.Samples
	}
	datapath.Report(os.Stdout, all, splits(all), o.verbose)
	nb := cfgs[1].Backend.(*datapath.Nft)
	if o.fullApply {
		fmt.Printf("\nnft: full apply before each round: median %s\n", datapath.MS(datapath.MedianDuration(cfgs[1].Applies)))
	} else {
		fmt.Printf("\nnft: switching on before each round (adding the %d base chains to the applied table, one incremental transaction): median %s\n",
			nb.Hooks, datapath.MS(datapath.MedianDuration(cfgs[1].Applies)))
	}
	if lr != nil {
		fmt.Printf("nft: learning the %d pairs through the Learner (one transaction each; %s): median %s\n",
			len(l.pairs), learnedWhen(o.fullApply), datapath.MS(datapath.MedianDuration(lr.took)))
	}
	return nil
}

// configs builds the testbeds and returns the baseline and nftables on the
// first and, when asked and built in, iptables on a second one: applying
// it takes far too long to switch it on and off between rounds. The
// second node's baseline is printed to show the two nodes alike. rs is
// snap compiled, and l the pairs to learn into its table.
func configs(ctx context.Context, plugin string, snap policy.Snapshot, rs ruleset.Ruleset, l learned, o options) ([]*datapath.Config, *learning, error) {
	bed, err := datapath.NewTestbed(ctx, plugin, testPort, o.clientCPU, o.serverCPU)
	if err != nil {
		return nil, nil, err
	}
	cfgs := []*datapath.Config{{Backend: datapath.None{}, Samples: datapath.Samples{Name: "none"}, Bed: bed}}
	var (
		lr   *learning
		ipt  *datapath.Config
		iptc = make(chan error, 1)
	)
	switch {
	case !o.iptables:
		fmt.Println("iptables backend: not measured (pass -iptables)")
	case newIptables == nil:
		fmt.Printf("iptables backend: not measured: %s; measuring nftables only\n", iptablesMissing)
	default:
		if ipt, err = iptablesConfig(ctx, plugin, rs, o); err != nil {
			return cfgs, nil, err
		}
		// Apply in the background, while nftables does its full sync.
		go func() {
			var err error
			ipt.Setup, err = ipt.On(ctx)
			iptc <- err
		}()
	}
	// Two tables take turns in one namespace only by full applies: each
	// applier would otherwise diff against a table the other replaced.
	nb, err := datapath.NewNft(ctx, bed.Node().Path(), rs, o.fullApply)
	if err == nil {
		cfgs = append(cfgs, &datapath.Config{Backend: nb, Samples: datapath.Samples{Name: "nft"}, Bed: bed, Enforces: true,
			Setup: nb.Sync, Note: "one transaction"})
	} else {
		err = fmt.Errorf("nftables backend: %w", err)
	}
	if err == nil && len(l.pairs) > 0 {
		lr, err = fillChecked(nb, bed.Client, l)
	}
	if err == nil && o.breakdown {
		s := withoutLearned(snap)
		s.Policies = nil
		var bare *datapath.Nft
		if bare, err = datapath.NewNft(ctx, bed.Node().Path(), policy.Compile(s), true); err == nil {
			cfgs = append(cfgs, &datapath.Config{Backend: bare, Samples: datapath.Samples{Name: "nft-bare"}, Bed: bed,
				Setup: bare.Sync, Note: "no policy: conntrack, NAT, skeleton"})
		} else {
			err = fmt.Errorf("nftables backend without policies: %w", err)
		}
	}
	if err == nil && o.breakdown {
		var ct *datapath.Nft
		if ct, err = datapath.NewNft(ctx, bed.Node().Path(), datapath.ConntrackOnly(), true); err == nil {
			cfgs = append(cfgs, &datapath.Config{Backend: ct, Samples: datapath.Samples{Name: "conntrack"}, Bed: bed,
				Setup: ct.Sync, Note: "one rule, ct state established,related accept: the floor of stateful filtering"})
		} else {
			err = fmt.Errorf("conntrack-only table: %w", err)
		}
	}
	for _, part := range o.parts {
		if err != nil {
			break
		}
		var (
			pb   *datapath.Nft
			prs  ruleset.Ruleset
			name = "conntrack+" + part
		)
		if prs, err = withPart(rs, part); err == nil {
			pb, err = datapath.NewNft(ctx, bed.Node().Path(), prs, true)
		}
		if err == nil {
			cfgs = append(cfgs, &datapath.Config{Backend: pb, Samples: datapath.Samples{Name: name}, Bed: bed,
				Setup: pb.Sync, Note: "the conntrack floor plus weir's " + part + " chain alone"})
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
	return cfgs, lr, err
}

// parts name the base chains of weir's table -parts can add, one at a
// time, to the conntrack floor.
var parts = map[string]string{"nat": "postrouting-masq", "spoof": "prerouting-spoof"}

// withPart is the conntrack floor plus the base chain of rs that parts
// names for part and the chains it jumps to, with the sets their rules look
// up and their counters; an error when rs has no such chain (the
// measurement would be the floor's).
func withPart(rs ruleset.Ruleset, part string) (ruleset.Ruleset, error) {
	ch, ok := rs.Chain(parts[part])
	if !ok {
		return ruleset.Ruleset{}, fmt.Errorf("the table has no chain %s", parts[part])
	}
	out := datapath.ConntrackOnly()
	sets, counters := map[string]bool{}, map[string]bool{}
	for todo := []ruleset.Chain{ch}; len(todo) > 0; todo = todo[1:] {
		out.Chains = append(out.Chains, todo[0])
		for _, r := range todo[0].Rules {
			for _, m := range r.Matches {
				if m.Kind == ruleset.MatchLookup {
					sets[m.Set] = true
				}
			}
			if r.Counter != "" {
				counters[r.Counter] = true
			}
			if r.Verdict.Kind == ruleset.VerdictJump {
				next, ok := rs.Chain(r.Verdict.Chain)
				if !ok {
					return ruleset.Ruleset{}, fmt.Errorf("chain %s jumps to missing chain %s", todo[0].Name, r.Verdict.Chain)
				}
				todo = append(todo, next)
			}
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
func iptablesConfig(ctx context.Context, plugin string, rs ruleset.Ruleset, o options) (*datapath.Config, error) {
	bed, err := datapath.NewTestbed(ctx, plugin, testPort, o.clientCPU, o.serverCPU)
	if err != nil {
		return nil, err
	}
	if err := bed.PrintBare(ctx, o.duration/3); err != nil {
		return nil, errors.Join(fmt.Errorf("iptables node: %w", err), bed.Close())
	}
	b, err := newIptables(bed.Node().Path(), rs)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("iptables backend: %w", err), bed.Close())
	}
	return &datapath.Config{Backend: b, Samples: datapath.Samples{Name: "iptables"}, Bed: bed, Enforces: true,
		Note: "one restore, on its own node, once"}, nil
}

func elems(rs ruleset.Ruleset) int {
	n := 0
	for _, s := range rs.Sets {
		n += len(s.Elems)
	}
	return n
}
