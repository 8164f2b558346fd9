// Command bench-api-to-kernel measures weir-agent against a real kube-apiserver (started
// by the integration/kube harness on loopback): the time from one API write
// (a pod label change) to the kernel holding its effect, with 10,000 pods
// and 1,000 policies in the cluster, and the agent's resident memory. Run
// as root; everything happens in namespaces it creates and removes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/weir-cni/weir/integration/kube"
	"github.com/weir-cni/weir/internal/testkit"
)

type options struct {
	pods, policies, changes int
	peerChanges             int
	agent, peer             string
	build, verbose          bool
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	flag.IntVar(&o.pods, "pods", 10000, "pods in the cluster")
	flag.IntVar(&o.policies, "policies", 1000, "NetworkPolicies in the cluster")
	flag.IntVar(&o.changes, "changes", 40, "label changes to time")
	flag.StringVar(&o.agent, "agent", "", "weir-agent binary (default: build ./cmd/weir-agent)")
	flag.StringVar(&o.peer, "peer", "", "kube-router=<binary>: measure kube-router's firewall after the agent, same cluster (bench/kube-router builds it)")
	flag.IntVar(&o.peerChanges, "peer-changes", 6, "label changes to time for the peer, twice (each is one full sync of kube-router's: ~15s at 10,000 pods)")
	flag.BoolVar(&o.build, "build-k8s", false, "build etcd and kube-apiserver if missing (~30 min the first time)")
	flag.BoolVar(&o.verbose, "v", false, "print the agent's last sync log lines (read/compile/apply split)")
	flag.Parse()
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

func bench(ctx context.Context, o options) (err error) {
	tmp, err := os.MkdirTemp("", "weir-bench-api-to-kernel-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.agent == "" {
		o.agent = filepath.Join(tmp, "weir-agent")
		if err := testkit.GoBuild(ctx, "github.com/weir-cni/weir/cmd/weir-agent", o.agent); err != nil {
			return err
		}
	}
	var peerBin string
	if o.peer != "" {
		if peerBin, err = peerBinary(o.peer); err != nil {
			return err
		}
	}
	kc, err := kube.Start(ctx, kube.Options{Build: o.build})
	if err != nil {
		return err
	}
	defer kc.Stop()
	node, err := testkit.NewNS("weirkb")
	if err != nil {
		return err
	}
	defer node.Delete()

	start := time.Now()
	local, err := populate(ctx, kc, o)
	if err != nil {
		return err
	}
	fmt.Printf("cluster: %d pods, %d policies registered in %v\n", o.pods, o.policies, time.Since(start).Round(time.Millisecond))

	kcfg, err := kc.KubeconfigFor(node.Path())
	if err != nil {
		return err
	}
	sock := filepath.Join(tmp, "agent.sock")
	logPath := filepath.Join(tmp, "agent.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	agent := exec.Command(o.agent, "--node-name", nodeName, "--kubeconfig", kcfg, "--socket", sock,
		"--cluster-cidr", "10.0.0.0/8", "--node-routes=false", "--http-addr", "")
	agent.Stdout, agent.Stderr = logf, logf
	if err := testkit.StartIn(node, agent); err != nil {
		return err
	}
	defer func() { _ = agent.Process.Kill(); _ = agent.Wait() }()
	defer func() {
		if err != nil || o.verbose {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			fmt.Fprintf(os.Stderr, "agent log tail:\n%s\n", strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
	}()
	start = time.Now()
	if _, err := testkit.WaitSynced(ctx, sock, 5*time.Minute); err != nil {
		return err
	}
	firstSync := time.Since(start)
	fmt.Printf("agent first sync (caches + compile + apply): %v\n", firstSync.Round(time.Millisecond))

	lat, err := labelChanges(ctx, kc, node.Path(), local, o.changes)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	fmt.Printf("API write -> kernel, one pod label change (%d samples): p50 %v  p99 %v  max %v   target p99 < 20ms\n",
		len(lat), pct(lat, 50), pct(lat, 99), lat[len(lat)-1])
	rss, err := rssOf(agent.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Printf("agent RSS: %.1f MiB   target < 150 MB\n", float64(rss)/(1<<20))
	fmt.Printf("(GOMAXPROCS %d, load %s)\n", runtime.GOMAXPROCS(0), loadavg())
	if o.peer == "" {
		return nil
	}
	_ = agent.Process.Kill() // the peer runs alone, as the agent did
	_ = agent.Wait()
	err = comparePeer(ctx, kc, local, peerBin, o.peerChanges, figures{firstSync, lat, rss})
	fmt.Printf("(load %s)\n", loadavg())
	return err
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)].Round(10 * time.Microsecond)
}

func rssOf(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb)
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmRSS")
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
