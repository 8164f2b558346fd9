// Command weir-e2e brings up a real multi-node Kubernetes cluster on this
// machine (integration/cluster: control plane and nodes in namespaces of
// their own, containerd + kubelet + kube-proxy per node), installs weir
// with `kubectl apply -f deploy/weir.yaml`, runs the upstream e2e suites and
// weir's own checks against it, prints a results table and tears the
// cluster down. hack/e2e.sh builds what it needs and calls it.
//
//	weir-e2e run [-keep] [-suites netpol,cnp,pods,services,weir,weir-cnp,weir-dns]
//	weir-e2e down
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/weir-cni/weir/integration/cluster"
)

func main() { os.Exit(run()) }

type options struct {
	dir, k8sBin, k8sVersion, weirBin, cniBin, ginkgo, manifest string
	coredns                                                    string
	// cnpTest is network-policy-api's conformance test binary, cnpCRD
	// its experimental ClusterNetworkPolicy CRD.
	cnpTest, cnpCRD              string
	suites                       string
	workers, procs, buildSeconds int
	keep                         bool
}

func run() int {
	var o options
	cache := os.Getenv("WEIR_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "weir")
	}
	fs := flag.NewFlagSet("weir-e2e", flag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", "/var/tmp/weir-e2e", "cluster state, logs and results")
	fs.StringVar(&o.k8sBin, "k8s-bin", filepath.Join(cache, "bin"), "directory of the Kubernetes binaries hack/build-k8s.sh built (NAME-VERSION)")
	fs.StringVar(&o.k8sVersion, "k8s-version", "v1.37.2", "Kubernetes version of those binaries")
	fs.StringVar(&o.weirBin, "weir-bin", "bin", "directory holding weir, weir-agent, weirctl, weir-install and pause")
	fs.StringVar(&o.cniBin, "cni-bin", "bin/tools", "directory holding the loopback CNI plugin nodes ship")
	fs.StringVar(&o.coredns, "coredns", filepath.Join(cache, "bin", "coredns-v1.15.0"), "coredns binary for the cluster's DNS add-on")
	fs.StringVar(&o.ginkgo, "ginkgo", "", "ginkgo CLI, to run the netpol specs in parallel (empty: serially)")
	fs.StringVar(&o.manifest, "manifest", "deploy/weir.yaml", "the manifest a user applies")
	fs.StringVar(&o.cnpTest, "cnp-test", "", "network-policy-api conformance test binary (hack/build-k8s.sh cnp-conformance.test), for the cnp suite")
	fs.StringVar(&o.cnpCRD, "cnp-crd", "", "experimental ClusterNetworkPolicy CRD of network-policy-api, applied before weir is installed (needed by the cnp, weir-cnp and weir-dns suites)")
	fs.StringVar(&o.suites, "suites", "netpol,cnp,pods,services,weir,weir-cnp,weir-dns", "suites to run (comma-separated; none: just bring the cluster up)")
	fs.IntVar(&o.workers, "workers", 2, "worker nodes")
	fs.IntVar(&o.procs, "procs", 3, "parallel ginkgo processes for the netpol suite (with -ginkgo)")
	fs.IntVar(&o.buildSeconds, "build-seconds", -1, "time hack/e2e.sh spent building, for the results table")
	fs.BoolVar(&o.keep, "keep", false, "leave the cluster up and print how to reach it")
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: weir-e2e run|down [flags]")
		return 2
	}
	cmd := os.Args[1]
	if err := fs.Parse(os.Args[2:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) {
		fmt.Printf("%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	switch cmd {
	case "run":
		return runAll(ctx, o, logf)
	case "down":
		return down(o, logf)
	default:
		fmt.Fprintf(os.Stderr, "weir-e2e: unknown command %q (run, down)\n", cmd)
		return 2
	}
}

func (o options) k8s(name string) string {
	return filepath.Join(o.k8sBin, name+"-"+o.k8sVersion)
}

func (o options) binaries() (cluster.Binaries, error) {
	b := cluster.Binaries{
		Etcd:              filepath.Join(o.k8sBin, "etcd-v3.7.3"),
		APIServer:         o.k8s("kube-apiserver"),
		ControllerManager: o.k8s("kube-controller-manager"),
		Scheduler:         o.k8s("kube-scheduler"),
		Kubelet:           o.k8s("kubelet"),
		KubeProxy:         o.k8s("kube-proxy"),
		Kubectl:           o.k8s("kubectl"),
		CNIBin:            o.cniBin,
	}
	need := []string{b.Etcd, b.APIServer, b.ControllerManager, b.Scheduler, b.Kubelet, b.KubeProxy, b.Kubectl,
		o.k8s("e2e.test"), o.k8s("agnhost"), filepath.Join(o.cniBin, "loopback"), o.coredns}
	if o.wants("cnp") {
		need = append(need, o.cnpTest)
	}
	if o.wants("cnp") || o.wants("weir-cnp") || o.wants("weir-dns") {
		need = append(need, o.cnpCRD)
	}
	var missing []string
	for _, p := range need {
		if _, err := os.Stat(p); p == "" || err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("missing files (run hack/build-k8s.sh all and make build; hack/e2e.sh passes -cnp-test and -cnp-crd): %q", missing)
	}
	return b, nil
}

// selected returns the suites -suites names, in order.
func (o options) selected() []string {
	var out []string
	for _, name := range strings.Split(o.suites, ",") {
		if name = strings.TrimSpace(name); name != "" && name != "none" {
			out = append(out, name)
		}
	}
	return out
}

// wants reports whether -suites names suite.
func (o options) wants(suite string) bool { return slices.Contains(o.selected(), suite) }

// down removes a kept cluster and compares the machine with its state
// before the cluster came up.
func down(o options, logf func(string, ...any)) int {
	if err := cluster.Down(context.Background(), o.dir, logf); err != nil {
		logf("teardown: %v", err)
		return 1
	}
	if !hostClean(o, logf) {
		return 1
	}
	return 0
}

// hostClean restores the kubelet's sysctls and prints the comparison of
// the machine's namespaces before and after.
func hostClean(o options, logf func(string, ...any)) bool {
	before, err := cluster.LoadHost(filepath.Join(o.dir, "host-before.json"))
	if err != nil {
		logf("no host snapshot to compare with: %v", err)
		return false
	}
	if err := cluster.RestoreSysctls(before); err != nil {
		logf("%v", err)
	}
	after, err := cluster.SnapshotHost()
	if err != nil {
		logf("snapshot host: %v", err)
		return false
	}
	b, _ := o.binaries()
	report, clean := cluster.CompareHost(before, after, []string{b.Etcd, b.APIServer, b.ControllerManager,
		b.Scheduler, b.Kubelet, b.KubeProxy, "/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/bin/sleep infinity"})
	fmt.Printf("\nThe machine's own namespaces, before the cluster and after it:\n%s", report)
	if clean {
		fmt.Println("  => as before")
	} else {
		fmt.Println("  => NOT as before")
	}
	return clean
}
