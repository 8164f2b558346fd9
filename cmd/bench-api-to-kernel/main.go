// Command bench-api-to-kernel measures weir-agent against a real kube-apiserver (started
// by the integration/kube harness on loopback), at one or more cluster
// sizes (-sizes): the agent's first sync, its memory (RSS and the heap the
// garbage collector keeps), and the time from one API write (a pod label
// change, a policy added or deleted, a pod added or deleted) to the kernel
// holding its effect, broken down by the agent's phases. With -baseline, a
// second agent binary is measured first on the same cluster, for
// before/after figures of one run. With -peer, kube-router's firewall is
// measured next on the same cluster (at the -peer-sizes), for ratios to
// weir's figures of one run: its sync and change latencies, then the data
// path through it beside weir-agent's and the conntrack floor, in
// interleaved rounds (datapath.go). Run as root; everything happens in
// namespaces it creates and removes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/weir-cni/weir/internal/datapath"
	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/internal/testkit"
)

// size is one cluster the benchmark builds (synth.Cluster of its Options,
// whose Nodes other Node objects the benchmark registers) and the targets
// it is held to.
type size struct {
	name string
	synth.Options
	rssTarget float64 // MiB
	p99Target float64 // ms
}

var sizes = []size{
	{name: "10k", Options: synth.Options{Pods: 10000, Policies: 1000, Local: 1, Nodes: 99}, rssTarget: 64, p99Target: 10},
	{name: "50k", Options: synth.Options{Pods: 50000, Policies: 5000, Namespaces: 200, Local: 1, Nodes: 999}, rssTarget: 256},
}

type options struct {
	sizes, peerSizes      []size
	changes, otherChanges int
	peerChanges           int
	peerRounds            int
	peerDuration          time.Duration
	agent, baseline, peer string
	plugin                string
	heapProfiles          string
	build, verbose        bool
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	names := flag.String("sizes", "10k", "comma-separated cluster sizes: 10k (10,000 pods, 1,000 policies, 100 nodes, 100 local pods), 50k (50,000 pods, 5,000 policies, 1,000 nodes, 200 local pods)")
	flag.IntVar(&o.changes, "changes", 40, "pod label changes to time")
	flag.IntVar(&o.otherChanges, "other-changes", 10, "policy adds/deletes and pod adds/deletes to time (each)")
	flag.StringVar(&o.agent, "agent", "", "weir-agent binary (default: build ./cmd/weir-agent)")
	flag.StringVar(&o.baseline, "baseline", "", "comma-separated other weir-agent binaries (or scripts exec-ing one) to measure first, in order, on the same cluster (before/after)")
	flag.StringVar(&o.peer, "peer", "", "kube-router=<binary>: measure kube-router's firewall after the agents, same cluster (bench/kube-router builds it)")
	peerNames := flag.String("peer-sizes", "10k", "comma-separated sizes at which the peer runs (each of its label changes is one full sync of kube-router's: ~15s at 10k, far slower at 50k)")
	flag.IntVar(&o.peerChanges, "peer-changes", 6, "label changes to time for the peer (rounded up to even), twice")
	flag.IntVar(&o.peerRounds, "peer-datapath-rounds", 5, "interleaved datapath rounds (no table, conntrack floor, weir, kube-router) after the peer's latencies; 0 skips them")
	flag.DurationVar(&o.peerDuration, "peer-datapath-duration", time.Second, "length of each datapath measurement (three per configuration and round)")
	flag.StringVar(&o.plugin, "plugin", "", "weir plugin binary wiring the datapath pods (default: build ./cmd/weir)")
	flag.BoolVar(&o.build, "build-k8s", false, "build etcd and kube-apiserver if missing (~30 min the first time)")
	flag.StringVar(&o.heapProfiles, "heap-profiles", "", "run -agent (not the baselines) with --pprof and save its heap profiles, after the first sync and after the changes, in this directory as <size>-first-sync.pb.gz and <size>-changes.pb.gz (go tool pprof reads them)")
	flag.BoolVar(&o.verbose, "v", false, "print the agent's last sync log lines (read/compile/apply split)")
	flag.Parse()
	var err error
	if o.sizes, err = parseSizes(*names); err == nil {
		o.peerSizes, err = parseSizes(*peerNames)
	}
	if err == nil {
		err = o.validate()
	}
	if err == nil {
		err = checkProfileDir(o.heapProfiles)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-api-to-kernel:", err)
		return 2
	}
	ctx, stop, ok := testkit.RootContext("kube bench")
	if !ok {
		return 1
	}
	defer stop()
	if err := bench(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-api-to-kernel:", err)
		return 1
	}
	return 0
}

func bench(ctx context.Context, o options) error {
	tmp, err := os.MkdirTemp("", "weir-bench-api-to-kernel-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.agent == "" {
		o.agent = tmp + "/weir-agent"
		if err := testkit.GoBuild(ctx, "github.com/weir-cni/weir/cmd/weir-agent", o.agent); err != nil {
			return err
		}
	}
	var peerBin, plugin string
	if o.peer != "" {
		if peerBin, err = peerBinary(o.peer); err != nil {
			return err
		}
	}
	if peerBin != "" && o.peerRounds > 0 {
		if plugin, err = datapath.Plugin(ctx, o.plugin, tmp); err != nil {
			return err
		}
	}
	var agents []struct{ label, bin string }
	if o.baseline != "" {
		for _, b := range strings.Split(o.baseline, ",") {
			agents = append(agents, struct{ label, bin string }{"baseline " + filepath.Base(b), b})
		}
	}
	agents = append(agents, struct{ label, bin string }{"agent", o.agent})
	for _, sz := range o.sizes {
		if err := benchSize(ctx, sz, agents, peerBin, plugin, tmp, o); err != nil {
			return fmt.Errorf("%s: %w", sz.name, err)
		}
	}
	fmt.Printf("(GOMAXPROCS %d, load %s)\n", runtime.GOMAXPROCS(0), loadavg())
	return nil
}

// benchSize measures the agents, in order, on a cluster of size sz, then
// (if peerBin is set and sz is one of -peer-sizes) the peer, alone, against
// the last agent's figures, then the data path through both (plugin wires
// its pods).
func benchSize(ctx context.Context, sz size, agents []struct{ label, bin string }, peerBin, plugin, tmp string, o options) error {
	cl, err := newCluster(ctx, sz, o.build)
	if err != nil {
		return err
	}
	defer cl.stop()
	var weir figures
	for _, a := range agents {
		if weir, err = measure(ctx, cl, a.label, a.bin, tmp, o); err != nil {
			return err
		}
	}
	if peerBin == "" || !slices.ContainsFunc(o.peerSizes, func(p size) bool { return p.name == sz.name }) {
		return nil
	}
	if err := comparePeer(ctx, cl.kc, cl.target, peerBin, o.peerChanges, weir, printer(sz.name, "kube-router")); err != nil {
		return err
	}
	if o.peerRounds == 0 {
		return nil
	}
	return compareDatapath(ctx, cl, o.agent, peerBin, plugin, tmp, o, printer(sz.name, "kube-router"))
}

// validate rejects flag values no run can use.
func (o options) validate() error {
	if o.peerRounds < 0 || o.peerDuration <= 0 {
		return fmt.Errorf("-peer-datapath-rounds %d, -peer-datapath-duration %v: want rounds >= 0 and a positive duration",
			o.peerRounds, o.peerDuration)
	}
	return nil
}

// checkProfileDir makes dir, the -heap-profiles directory, unless it
// exists, and checks that a file can be written in it: a run that would
// fail to save its profiles fails before it sets its cluster up. Nothing
// to check when dir is empty.
func checkProfileDir(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("-heap-profiles: %w", err)
	}
	f, err := os.CreateTemp(dir, ".bench-api-to-kernel-check-")
	if err != nil {
		return fmt.Errorf("-heap-profiles: %w", err)
	}
	return errors.Join(f.Close(), os.Remove(f.Name()))
}

// parseSizes looks up comma-separated size names.
func parseSizes(names string) ([]size, error) {
	var out []size
	for _, n := range strings.Split(names, ",") {
		i := slices.IndexFunc(sizes, func(s size) bool { return s.name == strings.TrimSpace(n) })
		if i < 0 {
			return nil, fmt.Errorf("unknown size %q (10k, 50k)", n)
		}
		out = append(out, sizes[i])
	}
	return out, nil
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func rssOf(pid int) (int64, error) {
	m, err := procStatus(pid, "VmRSS")
	return m["VmRSS"], err
}

// procStatus reads the named sizes (kB lines such as VmRSS or RssAnon) of
// /proc/pid/status, in bytes; it fails if one is missing.
func procStatus(pid int, names ...string) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, l := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(l, ":")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		var kb int64
		if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kb); err != nil {
			return nil, fmt.Errorf("/proc/%d/status %s: %w", pid, name, err)
		}
		out[name] = kb * 1024
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("/proc/%d/status: no %s", pid, n)
		}
	}
	return out, nil
}
