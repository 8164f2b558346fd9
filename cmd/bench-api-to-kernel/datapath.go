package main

// The peer's datapath phase: after kube-router's sync and change figures,
// the data path through its firewall is measured beside weir-agent's, in
// the same rounds and the same way as bench-datapath (internal/datapath):
// three testbeds, each a node namespace with a server and a client pod
// wired by the weir plugin, registered in the API server as the two pods
// of datapath.Pods on the node; one node holds the one-rule conntrack
// floor (and no table, the baseline), one runs weir-agent, one
// kube-router, both against the cluster of this size.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/weir-cni/weir/integration/kube"
	"github.com/weir-cni/weir/internal/datapath"
	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/policy"
)

// dpPort is the test connection's port: the cluster's tier-* policies
// allow TCP 5432 from the client (ns2, frontend) to the server (ns0, db),
// and no other rule does, so a new connection walks the policies of both
// pods before one allows it.
const dpPort = 5432

// The CPUs the client and the server threads are pinned to.
const dpClientCPU, dpServerCPU = 0, 1

// dpSplits are the ratios printed after the table: each firewall against
// the conntrack floor (weir's carry its targets), and kube-router against
// weir.
var dpSplits = []datapath.Split{
	{Num: "weir", Den: "conntrack", Label: "weir beyond conntrack", Targets: true},
	{Num: "kube-router", Den: "conntrack", Label: "kube-router beyond conntrack"},
	{Num: "kube-router", Den: "weir", Label: "kube-router against weir"},
}

// kept is a firewall its own process keeps in a node of its own
// (weir-agent, kube-router): the bench never switches it.
type kept struct{}

func (kept) On(context.Context) (time.Duration, error) { return 0, nil }
func (kept) Off(context.Context) error                 { return nil }
func (kept) Close() error                              { return nil }

// dpPath traces, in weir's compiled table of sz's cluster with the two
// pods, the test connection and one on the denied port
// (datapath.CheckPath).
func dpPath(sz size) (datapath.Path, error) {
	s := synth.Cluster(sz.Options)
	s.Pods = append(datapath.Pods(), s.Pods...)
	return datapath.CheckPath(policy.Compile(s), dpPort)
}

// compareDatapath measures the data path through weir-agent (agentBin) and
// kube-router (routerBin) on cl's cluster, beside the conntrack floor and
// no table, o.peerRounds interleaved rounds, and prints the report.
func compareDatapath(ctx context.Context, cl *cluster, agentBin, routerBin, plugin, tmp string, o options, pr func(string, ...any)) (err error) {
	p, err := dpPath(cl.size)
	if err != nil {
		return fmt.Errorf("the cluster does not exercise the policies: %w", err)
	}
	pr("datapath: %d rounds of %v per measurement, client cpu %d, server cpu %d; load average %s", o.peerRounds, o.peerDuration,
		dpClientCPU, dpServerCPU, datapath.Loadavg())
	pr("datapath: new connection %s -> %s:%d walks, in weir's table, egress %s, ingress %s (the last of each allows); port %d is dropped",
		datapath.ClientIP, datapath.ServerIP, dpPort, strings.Join(p.Egress, ", "), strings.Join(p.Ingress, ", "), datapath.DeniedPort)
	var beds []*datapath.Testbed
	defer func() {
		for _, b := range slices.Backward(beds) {
			err = errors.Join(err, b.Close())
		}
	}()
	for range 3 {
		b, err := datapath.NewTestbed(ctx, plugin, dpPort, dpClientCPU, dpServerCPU)
		if err != nil {
			return err
		}
		beds = append(beds, b)
	}
	floor, weirBed, krBed := beds[0], beds[1], beds[2]
	pr("datapath: nodes %s (none, conntrack), %s (weir-agent), %s (kube-router)", floor.Node().Name, weirBed.Node().Name, krBed.Node().Name)
	for _, b := range beds[1:] {
		if err := b.PrintBare(ctx, o.peerDuration/3); err != nil {
			return err
		}
	}
	// The pods stay registered: the cluster is thrown away after this
	// phase.
	if err := registerPods(ctx, cl.kc); err != nil {
		return err
	}

	stopAgent, err := startAgent(ctx, cl.kc, weirBed.Node(), agentBin, tmp, cl.size.name)
	if err != nil {
		return err
	}
	defer stopAgent()
	kr, stopRouter, err := startSyncedRouter(cl.kc, krBed.Node(), routerBin, pr)
	if err != nil {
		return err
	}
	defer func() { stopRouter(err) }()
	ct, err := datapath.NewNft(ctx, floor.Node().Path(), datapath.ConntrackOnly(), true)
	if err != nil {
		return fmt.Errorf("conntrack-only table: %w", err)
	}
	defer func() { err = errors.Join(err, ct.Close()) }()
	cfgs := []*datapath.Config{
		{Backend: datapath.None{}, Samples: datapath.Samples{Name: "none"}, Bed: floor},
		{Backend: ct, Samples: datapath.Samples{Name: "conntrack"}, Bed: floor},
		{Backend: kept{}, Samples: datapath.Samples{Name: "weir"}, Bed: weirBed, Enforces: true},
		{Backend: kept{}, Samples: datapath.Samples{Name: "kube-router"}, Bed: krBed, Enforces: true},
	}
	for _, cf := range cfgs {
		if err := datapath.Warmup(ctx, cfgs, cf, o.peerDuration/3); err != nil {
			return err
		}
	}
	syncs := kr.ends
	if err := datapath.Rounds(ctx, cfgs, o.peerRounds, o.peerDuration); err != nil {
		return err
	}
	all := make([]*datapath.Samples, len(cfgs))
	for i, cf := range cfgs {
		all[i] = &cf.Samples
	}
	datapath.Report(os.Stdout, all, dpSplits, o.verbose)
	if err := kr.read(); err != nil {
		return err
	}
	pr("datapath: kube-router full syncs during the rounds: %d; load average at the end %s", kr.ends-syncs, datapath.Loadavg())
	return nil
}

// registerPods registers datapath.Pods on the node, as after CNI ADD.
func registerPods(ctx context.Context, kc *kube.Cluster) error {
	for _, p := range synth.ObjectsOf(policy.Snapshot{Pods: datapath.Pods()}).Pods {
		if err := createPod(ctx, kc.Client, p); err != nil {
			return err
		}
	}
	return nil
}

// startAgent runs weir-agent bin in node against kc and waits for its
// first sync; stop kills it.
func startAgent(ctx context.Context, kc *kube.Cluster, node *testkit.NS, bin, tmp, size string) (stop func(), err error) {
	kcfg, err := kc.KubeconfigFor(node.Path())
	if err != nil {
		return nil, err
	}
	base := filepath.Join(tmp, size+"-datapath-agent")
	logf, err := os.Create(base + ".log")
	if err != nil {
		kc.StopRelay(node.Path())
		return nil, err
	}
	agent := agentCmd(bin, kcfg, base+".sock", logf)
	stop = func() {
		_ = agent.Process.Kill()
		_ = agent.Wait()
		logf.Close()
		kc.StopRelay(node.Path())
	}
	if err := testkit.StartIn(node, agent); err != nil {
		logf.Close()
		kc.StopRelay(node.Path())
		return nil, err
	}
	if _, err := testkit.WaitSynced(ctx, base+".sock", 5*time.Minute); err != nil {
		stop()
		return nil, fmt.Errorf("weir-agent on the datapath node: %w\n%s", err, kube.Tail(base+".log", 15))
	}
	return stop, nil
}

// startSyncedRouter runs kube-router bin in node against kc and waits for
// its first full sync to end, then for the syncs it queued meanwhile; it
// returns its log, followed from there on, and stop, which kills it
// (printing its log's tail when err is set).
func startSyncedRouter(kc *kube.Cluster, node *testkit.NS, bin string, pr func(string, ...any)) (*syncLog, func(error), error) {
	kcfg, err := kc.KubeconfigFor(node.Path())
	if err != nil {
		return nil, nil, err
	}
	r, err := startRouter(node, bin, kcfg)
	if err != nil {
		kc.StopRelay(node.Path())
		return nil, nil, err
	}
	stop := func(err error) {
		r.stop(err)
		kc.StopRelay(node.Path())
	}
	l := &syncLog{path: r.log}
	if err := l.wait(); err != nil {
		stop(err)
		return nil, nil, err
	}
	first := time.Since(r.start)
	if err := l.settle(3*time.Second, 2*time.Minute); err != nil {
		stop(err)
		return nil, nil, err
	}
	k, err := openIptables(node.Path())
	if err == nil {
		var chains []string
		chains, err = k.podChains()
		k.close()
		pr("datapath: kube-router first sync %v, %d pod chains; %d full syncs before it settled", first.Round(time.Millisecond), len(chains), l.ends)
	}
	if err != nil {
		stop(err)
		return nil, nil, err
	}
	return l, stop, nil
}
