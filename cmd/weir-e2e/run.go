package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/integration/cluster"
)

// phase is one timed step of a run.
type phase struct {
	name string
	took time.Duration
	err  error
}

// suites are the upstream e2e runs, by name.
func suites(o options) map[string]cluster.Suite {
	netpol := cluster.Suite{Name: "netpol", Focus: `Netpol`, Procs: o.procs}
	pods := cluster.Suite{Name: "pods", Focus: `\[sig-network\] Networking Granular Checks: Pods`}
	if !sctpAvailable() {
		for _, s := range []*cluster.Suite{&netpol, &pods} {
			s.Skip = `SCTPConnectivity`
			s.SkipReason = noSCTP
		}
	}
	return map[string]cluster.Suite{
		"netpol": netpol,
		"pods":   pods,
		"services": {Name: "services", Focus: servicesFocus, Skip: servicesSkip,
			SkipReason: "needs DNS, a load balancer or the internet, which this cluster does not have"},
	}
}

// servicesFocus picks the sig-network Service specs that need neither
// DNS, a load balancer nor the internet: ClusterIP, NodePort and session
// affinity.
const servicesFocus = `\[sig-network\] Services should (serve a basic endpoint from pods|serve multiport endpoints from pods|be able to create a functioning NodePort service|have session affinity work for service with type clusterIP|have session affinity work for NodePort service|be able to switch session affinity for service with type clusterIP|be able to switch session affinity for NodePort service|have session affinity timeout work for service with type clusterIP|have session affinity timeout work for NodePort service|be able to update service type to NodePort listening on same port number but different protocols|preserve source pod IP for traffic thru service cluster IP|be able to change the type from ClusterIP to NodePort|allow pods to hairpin back to themselves through services|serve endpoints on same port and different protocols|provide secure master service|release NodePorts on delete)`
const servicesSkip = `ExternalName|LoadBalancer|\[Disruptive\]|\[Serial\]`

// noSCTP is why the SCTP specs and tests are skipped on this kernel.
const noSCTP = "this kernel has no SCTP (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) fails)"

func sctpAvailable() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

func runAll(ctx context.Context, o options, logf func(string, ...any)) int {
	bins, err := o.binaries()
	if err != nil {
		logf("%v", err)
		return 2
	}
	stamp := time.Now().UTC().Format("20060102-150405")
	runDir := filepath.Join(o.dir, "runs", stamp)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		logf("%v", err)
		return 1
	}
	var phases []phase
	if o.buildSeconds >= 0 {
		phases = append(phases, phase{name: "build (Kubernetes, weir, tools)", took: time.Duration(o.buildSeconds) * time.Second})
	}
	timed := func(name string, f func() error) error {
		start := time.Now()
		logf("== %s", name)
		err := f()
		phases = append(phases, phase{name, time.Since(start), err})
		if err != nil {
			logf("%s failed: %v", name, err)
		} else {
			logf("%s: %v", name, time.Since(start).Round(time.Second))
		}
		return err
	}
	before, err := cluster.SnapshotHost()
	if err != nil {
		logf("snapshot host: %v", err)
		return 1
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		logf("%v", err)
		return 1
	}
	if _, err := os.Stat(filepath.Join(o.dir, "state.json")); err == nil {
		logf("a cluster is already up in %s: remove it with `hack/e2e.sh --down` first", o.dir)
		return 1
	}
	if err := cluster.SaveHost(filepath.Join(o.dir, "host-before.json"), before); err != nil {
		logf("%v", err)
		return 1
	}
	_ = os.RemoveAll(filepath.Join(o.dir, "logs"))

	var images []string
	var c *cluster.Cluster
	var results []cluster.Result
	failed := timed("images", func() error {
		images, err = cluster.BuildImages(filepath.Join(o.dir, "images"), cluster.ImageSources{
			Pause: filepath.Join(o.weirBin, "pause"), Agnhost: o.k8s("agnhost"), WeirBin: o.weirBin, CoreDNS: o.coredns,
			NoSCTP: !sctpAvailable(),
		})
		return err
	}) != nil
	if !failed {
		failed = timed("cluster up", func() error {
			c, err = cluster.Up(ctx, cluster.Config{Dir: o.dir, Workers: o.workers, Binaries: bins, Images: images, Logf: logf})
			return err
		}) != nil
	}
	// The CRD comes first, as on a cluster where the agent finds the
	// ClusterNetworkPolicy API served from its start.
	if !failed && o.cnpCRD != "" {
		failed = timed("ClusterNetworkPolicy CRD (experimental)", func() error { return c.ApplyCRD(ctx, o.cnpCRD) }) != nil
	}
	if !failed {
		failed = timed("install weir", func() error { return c.Install(ctx, o.manifest) }) != nil
	}
	if !failed {
		failed = timed("DNS add-on (CoreDNS)", func() error { return c.InstallDNS(ctx) }) != nil
	}
	if !failed {
		for _, name := range o.selected() {
			run := suiteRunner(ctx, c, o, runDir, logf, name)
			if run == nil {
				logf("unknown suite %q", name)
				failed = true
				continue
			}
			var r cluster.Result
			_ = timed("suite "+name, func() error {
				r = run()
				if r.Err == nil && r.Count("failed") > 0 {
					return fmt.Errorf("%d failed", r.Count("failed"))
				}
				return r.Err
			})
			results = append(results, r)
		}
	}
	for _, r := range results {
		if r.Err != nil || r.Count("failed") > 0 {
			failed = true
		}
	}
	if failed {
		logf("cluster logs: %s", filepath.Join(o.dir, "logs"))
	}
	clean := true
	if o.keep {
		printKept(o, c)
	} else {
		_ = timed("teardown", func() error { return cluster.Down(context.Background(), o.dir, logf) })
		clean = hostClean(o, logf)
	}
	summary := summarize(phases, results, runDir)
	fmt.Print("\n" + summary)
	if err := os.WriteFile(filepath.Join(runDir, "summary.md"), []byte(summary), 0o644); err != nil {
		logf("%v", err)
	}
	fmt.Printf("\nJUnit XML and logs: %s\n", runDir)
	if failed || !clean {
		return 1
	}
	return 0
}

// suiteRunner returns how to run the suite called name, nil if there is
// none: an upstream e2e focus, the ClusterNetworkPolicy conformance suite
// or weir's own checks.
func suiteRunner(ctx context.Context, c *cluster.Cluster, o options, runDir string, logf func(string, ...any), name string) func() cluster.Result {
	switch name {
	case "cnp":
		return func() cluster.Result { return cnpConformance(ctx, c, o, runDir, logf) }
	case "weir":
		return func() cluster.Result { return weirChecks(ctx, c, o, runDir, logf) }
	case "weir-cnp":
		return func() cluster.Result { return cnpChecks(ctx, c, o, runDir, logf) }
	case "weir-dns":
		return func() cluster.Result { return dnsChecks(ctx, c, o, runDir, logf) }
	}
	s, ok := suites(o)[name]
	if !ok {
		return nil
	}
	return func() cluster.Result { return c.E2E(ctx, o.k8s("e2e.test"), o.ginkgo, runDir, s, nil) }
}

func printKept(o options, c *cluster.Cluster) {
	if c == nil {
		fmt.Printf("\nthe cluster is kept in %s; remove it with: hack/e2e.sh --down\n", o.dir)
		return
	}
	fmt.Printf(`
The cluster is kept. The API server listens on %s:6443 inside the network namespace %s:
  export KUBECONFIG=%s
  ip netns exec %s %s get nodes -o wide
A node's own view (containerd, CNI config, weir's table), e.g.:
  %s
Remove it with: hack/e2e.sh --down
`, c.CPIP, c.CPNetns, c.Kubeconfig, c.CPNetns, c.Binaries.Kubectl,
		strings.Join(c.NodeArgv(c.Nodes[0], "nft", "list", "table", "inet", "weir"), " "))
}

// summarize renders the phases and the suites as Markdown tables, then
// every spec that did not pass.
func summarize(phases []phase, results []cluster.Result, runDir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## weir e2e, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "| phase | time | result |\n| --- | --- | --- |\n")
	for _, p := range phases {
		res := "ok"
		if p.err != nil {
			res = "FAILED: " + strings.ReplaceAll(p.err.Error(), "|", "/")
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", p.name, p.took.Round(time.Second), res)
	}
	fmt.Fprintf(&b, "\n| suite | passed | failed | skipped | time |\n| --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s |\n", r.Suite.Name, r.Count("passed"), r.Count("failed"), r.Count("skipped"), r.Duration.Round(time.Second))
	}
	for _, r := range results {
		fmt.Fprintf(&b, "\n### %s\n\n", r.Suite.Name)
		if r.Err != nil {
			fmt.Fprintf(&b, "- ERROR: %v\n", r.Err)
		}
		for _, c := range r.Cases {
			line := fmt.Sprintf("- %s %s (%s)", strings.ToUpper(c.State), c.Name, c.Duration.Round(time.Second))
			if c.State != "passed" && c.Message != "" {
				line += ": " + c.Message
			}
			fmt.Fprintln(&b, line)
		}
	}
	return b.String()
}
