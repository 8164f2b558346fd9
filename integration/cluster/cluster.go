package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weir-cni/weir/integration/kube"
)

// Binaries are the executables the cluster runs.
type Binaries struct {
	Etcd, APIServer, ControllerManager, Scheduler string
	Kubelet, KubeProxy, Kubectl                   string
	// CNIBin holds the node's own CNI plugins (loopback), copied into
	// each node's /opt/cni/bin as a distribution's package would.
	CNIBin string
}

// Config describes a cluster. Zero fields take the defaults.
type Config struct {
	// Dir holds certificates, configs, node directories, logs and the
	// state file (default /var/tmp/weir-e2e).
	Dir string
	// Prefix names namespaces, cgroup roots and links (default weir-e2e).
	Prefix string
	// Workers is the number of worker nodes (default 2).
	Workers int
	// Underlay is the nodes' network; the control plane takes its first
	// address, nodes the 11th on (default 10.89.0.0/24).
	Underlay netip.Prefix
	// ClusterCIDR is the pods' network, split into /24s per node by the
	// controller-manager (default 10.244.0.0/16); ServiceCIDR the
	// services' (default 10.96.0.0/16).
	ClusterCIDR, ServiceCIDR netip.Prefix
	Binaries                 Binaries
	// Images are docker-archive tarballs imported into every node's
	// containerd (pause, agnhost, weir).
	Images []string
	// SandboxImage is containerd's pause image.
	SandboxImage string
	Logf         func(format string, args ...any)
}

func (c *Config) defaults() {
	if c.Dir == "" {
		c.Dir = "/var/tmp/weir-e2e"
	}
	if c.Prefix == "" {
		c.Prefix = "weir-e2e"
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if !c.Underlay.IsValid() {
		c.Underlay = netip.MustParsePrefix("10.89.0.0/24")
	}
	if !c.ClusterCIDR.IsValid() {
		c.ClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	}
	if !c.ServiceCIDR.IsValid() {
		c.ServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")
	}
	if c.SandboxImage == "" {
		c.SandboxImage = "registry.k8s.io/pause:3.10.2"
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Node is one worker.
type Node struct {
	Name  string
	Netns string
	IP    netip.Addr
	// Dir holds the node's own /etc/cni/net.d, /opt/cni/bin,
	// /var/lib/{kubelet,containerd,cni}, /var/log/pods.
	Dir    string
	holder int
}

// Cluster is a running (or kept) cluster.
type Cluster struct {
	Config
	// CPNetns is the control plane's network namespace; the underlay
	// bridge lives there too.
	CPNetns string
	CPIP    netip.Addr
	// ExtNetns is a host outside the cluster on the underlay.
	ExtNetns string
	ExtIP    netip.Addr
	Nodes    []*Node
	// Kubeconfig is an admin kubeconfig (server https://CPIP:6443),
	// usable from the control plane's namespace.
	Kubeconfig string
	LogDir     string
	Client     kubernetes.Interface
	RestConfig *rest.Config

	pki   *kube.PKI
	state *State
}

func newCluster(cfg Config) (*Cluster, error) {
	cfg.defaults()
	c := &Cluster{Config: cfg, LogDir: filepath.Join(cfg.Dir, "logs")}
	c.CPNetns = cfg.Prefix + "-cp"
	c.ExtNetns = cfg.Prefix + "-ext"
	base := cfg.Underlay.Addr()
	c.CPIP = base.Next()
	c.ExtIP = nth(base, 250)
	for i := 1; i <= cfg.Workers; i++ {
		name := fmt.Sprintf("%s-n%d", cfg.Prefix, i)
		c.Nodes = append(c.Nodes, &Node{
			Name: name, Netns: name, IP: nth(base, 10+i),
			Dir: filepath.Join(cfg.Dir, "nodes", name),
		})
	}
	c.Kubeconfig = filepath.Join(cfg.Dir, "admin.kubeconfig")
	return c, nil
}

func nth(a netip.Addr, n int) netip.Addr {
	for ; n > 0; n-- {
		a = a.Next()
	}
	return a
}

func (c *Cluster) logf(format string, args ...any) { c.Logf(format, args...) }

// Up brings a cluster up in cfg.Dir: underlay, control plane, nodes. The
// nodes register but stay NotReady until a CNI is installed. On error the
// cluster is left for Down (the caller decides: a kept failure is
// debuggable).
func Up(ctx context.Context, cfg Config) (*Cluster, error) {
	c, err := newCluster(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(c.Dir, stateFile)); err == nil {
		return nil, fmt.Errorf("a cluster already exists in %s: remove it first (--down)", c.Dir)
	}
	// What a removed cluster may have left: its data, never reused.
	for _, d := range []string{"etcd", "pki", "apiserver-certs", "nodes"} {
		if err := os.RemoveAll(filepath.Join(c.Dir, d)); err != nil {
			return nil, fmt.Errorf("remove stale %s: %w", d, err)
		}
	}
	for _, d := range []string{c.Dir, c.LogDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("make %s: %w", d, err)
		}
	}
	if c.state, err = loadState(c.Dir); err != nil {
		return nil, err
	}
	if err := c.state.update(func(*State) {}); err != nil {
		return nil, err
	}
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"underlay", c.underlay},
		{"control plane", c.controlPlane},
		{"nodes", c.startNodes},
		{"nodes registered", c.waitNodesRegistered},
	}
	for _, s := range steps {
		start := time.Now()
		if err := s.f(ctx); err != nil {
			return c, fmt.Errorf("%s: %w", s.name, err)
		}
		c.logf("%s: done in %v", s.name, time.Since(start).Round(time.Millisecond))
	}
	return c, nil
}

// Open returns the kept cluster in cfg.Dir with its admin client.
func Open(cfg Config) (*Cluster, error) {
	c, err := newCluster(cfg)
	if err != nil {
		return nil, err
	}
	if c.state, err = loadState(c.Dir); err != nil {
		return nil, err
	}
	if len(c.state.Procs) == 0 {
		return nil, fmt.Errorf("no cluster in %s", c.Dir)
	}
	for _, n := range c.Nodes {
		n.holder = c.state.Holders[n.Name]
	}
	return c, c.clients()
}

// clients builds the admin client; its connections are dialled inside the
// control plane's namespace, so the harness reaches the API server from
// the machine's own namespace without a route.
func (c *Cluster) clients() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load %s: %w", c.Kubeconfig, err)
	}
	cfg.Dial = dialIn("/run/netns/" + c.CPNetns)
	cfg.QPS, cfg.Burst = -1, 0
	c.RestConfig = cfg
	c.Client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	return nil
}

// In returns how to run a command in node n's namespaces.
func (c *Cluster) in(n *Node) where { return where{netns: n.Netns, mntPid: n.holder} }

// Exec runs a short command in the control plane's network namespace (for
// kubectl and the e2e binary, which reach the API server and the nodes
// there).
func (c *Cluster) Exec(ctx context.Context, bin string, args ...string) (string, error) {
	return where{netns: c.CPNetns}.run(ctx, bin, args...)
}

// CPArgv prefixes a command so it runs in the control plane's namespace.
func (c *Cluster) CPArgv(bin string, args ...string) []string {
	return where{netns: c.CPNetns}.argv(bin, args...)
}

// NodeArgv prefixes a command so it runs in node n's network and mount
// namespaces (crictl, ctr, nft against that node).
func (c *Cluster) NodeArgv(n *Node, bin string, args ...string) []string {
	return c.in(n).argv(bin, args...)
}

// Down stops every process of the cluster in dir, removes its namespaces,
// mounts, cgroups and directories. It works from the state file alone, on
// a whole or half-built cluster, and is safe to repeat.
func Down(ctx context.Context, dir string, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	s, err := loadState(dir)
	if err != nil {
		return err
	}
	var errs []error
	// Kubelets and proxies first (so nothing restarts containers), then
	// the rest, newest first.
	for i := len(s.Procs) - 1; i >= 0; i-- {
		if err := s.Procs[i].stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for node, holder := range s.Holders {
		// Containers: every process in the node's cgroups.
		for _, root := range s.CgroupRoots {
			errs = append(errs, killAll(func() []int { return cgroupPids(root) }))
		}
		// containerd's shims and anything else in its mount namespace.
		errs = append(errs, killAll(func() []int { return pidsInMountNS(holder) }))
		h := Proc{Name: node + "-mounts", Pid: holder}
		errs = append(errs, h.stop(5*time.Second))
	}
	for _, root := range s.CgroupRoots {
		errs = append(errs, removeCgroupRoot(root))
	}
	for _, n := range s.Netns {
		if _, err := os.Stat("/run/netns/" + n); err == nil {
			if _, err := (where{}).run(ctx, "ip", "netns", "delete", n); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for i := len(s.Dirs) - 1; i >= 0; i-- {
		_ = os.Remove(s.Dirs[i]) // only if still empty
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Node directories hold overlay snapshots; their mounts died with the
	// mount namespaces.
	for _, d := range []string{"nodes", "etcd"} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return fmt.Errorf("remove %s: %w", d, err)
		}
	}
	logf("cluster in %s removed", dir)
	return os.Remove(filepath.Join(dir, stateFile))
}

// dialIn returns a dialer whose sockets live in the network namespace at
// path: the connection is made there and then used from any thread.
func dialIn(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := withNetns(path, func() error {
			var err error
			conn, err = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
}
