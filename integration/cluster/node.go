package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// nodePaths are the directories a node keeps for itself, as a kind node
// does inside its container: each is a directory under the node's Dir
// bind-mounted over the host path in the node's mount namespace.
var nodePaths = []string{
	"/etc/cni/net.d",
	"/opt/cni/bin",
	"/var/lib/cni",
	"/var/lib/kubelet",
	"/var/lib/containerd",
	"/var/log/pods",
	"/var/log/containers",
}

func nodeDir(n *Node, hostPath string) string {
	return filepath.Join(n.Dir, strings.ReplaceAll(strings.TrimPrefix(hostPath, "/"), "/", "-"))
}

func (c *Cluster) startNodes(ctx context.Context) error {
	for _, n := range c.Nodes {
		start := time.Now()
		if err := c.startNode(ctx, n); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		c.logf("node %s (%s) up in %v", n.Name, n.IP, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func (c *Cluster) startNode(ctx context.Context, n *Node) error {
	if err := c.mountNamespace(ctx, n); err != nil {
		return err
	}
	// The node's CNI plugins, as its distribution ships them.
	if c.Binaries.CNIBin != "" {
		if err := copyFile(filepath.Join(c.Binaries.CNIBin, "loopback"), filepath.Join(nodeDir(n, "/opt/cni/bin"), "loopback"), 0o755); err != nil {
			return err
		}
	}
	root := "/" + n.Name
	if err := c.state.update(func(s *State) { s.CgroupRoots = append(s.CgroupRoots, root) }); err != nil {
		return err
	}
	if err := makeCgroupRoot(root); err != nil {
		return err
	}
	if err := c.startContainerd(ctx, n); err != nil {
		return err
	}
	for _, img := range c.Images {
		if _, err := c.in(n).run(ctx, "ctr", "--address", "/run/containerd/containerd.sock",
			"-n", "k8s.io", "images", "import", "--no-unpack=false", img); err != nil {
			return fmt.Errorf("import %s: %w", filepath.Base(img), err)
		}
	}
	if err := c.startKubelet(n); err != nil {
		return err
	}
	return c.startKubeProxy(n)
}

// mountNamespace starts the process that holds n's mount namespace (a
// slave of the machine's, so nothing mounted in it shows outside) and
// mounts the node's own directories and a tmpfs /run in it.
func (c *Cluster) mountNamespace(ctx context.Context, n *Node) error {
	for _, p := range nodePaths {
		if err := os.MkdirAll(nodeDir(n, p), 0o755); err != nil {
			return fmt.Errorf("make node dir: %w", err)
		}
		if err := c.ensureHostDir(p); err != nil {
			return err
		}
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "--", "sleep", "infinity")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mount namespace holder: %w", err)
	}
	go cmd.Wait() //nolint:errcheck // reaped here
	n.holder = cmd.Process.Pid
	if err := c.state.update(func(s *State) { s.Holders[n.Name] = n.holder }); err != nil {
		return err
	}
	// unshare execs sleep once the namespace is made.
	if err := poll(ctx, "mount namespace of "+n.Name, 10*time.Second, 20*time.Millisecond, func() error {
		self, _ := os.Readlink("/proc/self/ns/mnt")
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", n.holder))
		if err != nil || l == self {
			return errNotReady
		}
		return nil
	}); err != nil {
		return err
	}
	w := where{mntPid: n.holder}
	if _, err := w.run(ctx, "mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs-"+n.Name, "/run"); err != nil {
		return err
	}
	for _, p := range nodePaths {
		if _, err := w.run(ctx, "mount", "--bind", nodeDir(n, p), p); err != nil {
			return err
		}
	}
	return nil
}

// ensureHostDir makes a missing bind-mount target on the host and
// records it, so Down removes it again.
func (c *Cluster) ensureHostDir(p string) error {
	var missing []string
	for d := p; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append([]string{d}, missing...)
	}
	for _, d := range missing {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("make %s: %w", d, err)
		}
		if err := c.state.update(func(s *State) { s.Dirs = append(s.Dirs, d) }); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startContainerd(ctx context.Context, n *Node) error {
	cfg := fmt.Sprintf(`version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
`, c.SandboxImage)
	path := filepath.Join(n.Dir, "containerd.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("write containerd config: %w", err)
	}
	if _, err := c.start(n.Name+"-containerd", c.in(n), nil, "containerd", "--config", path); err != nil {
		return err
	}
	return poll(ctx, n.Name+" containerd", time.Minute, 100*time.Millisecond, func() error {
		_, err := c.in(n).run(ctx, "ctr", "--address", "/run/containerd/containerd.sock", "version")
		return err
	})
}

func (c *Cluster) startKubelet(n *Node) error {
	kubeconfig := filepath.Join(n.Dir, "kubelet.kubeconfig")
	if err := c.pki.UserKubeconfig(kubeconfig, c.server(), "system:node:"+n.Name, "system:nodes"); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
cgroupRoot: /%s
failCgroupV1: false
failSwapOn: false
resolvConf: ""
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
clusterDomain: cluster.local
clusterDNS: [%s]
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: "1%%", nodefs.inodesFree: "1%%", imagefs.available: "1%%"}
nodeStatusReportFrequency: 10s
`, n.IP, c.pki.CAFile, n.Name, nth(c.ServiceCIDR.Addr(), 10))
	path := filepath.Join(n.Dir, "kubelet.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("write kubelet config: %w", err)
	}
	_, err := c.start(n.Name+"-kubelet", c.in(n), nil, c.Binaries.Kubelet,
		"--config="+path, "--kubeconfig="+kubeconfig,
		"--node-ip="+n.IP.String(), "--hostname-override="+n.Name, "--v=1")
	return err
}

func (c *Cluster) startKubeProxy(n *Node) error {
	kubeconfig := filepath.Join(n.Dir, "kube-proxy.kubeconfig")
	if err := c.pki.UserKubeconfig(kubeconfig, c.server(), "system:kube-proxy"); err != nil {
		return err
	}
	// The conntrack sysctls are not writable from a namespace other than
	// the machine's: zeros leave them alone.
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: %s}
hostnameOverride: %s
clusterCIDR: %s
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, kubeconfig, n.Name, c.ClusterCIDR)
	path := filepath.Join(n.Dir, "kube-proxy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("write kube-proxy config: %w", err)
	}
	_, err := c.start(n.Name+"-kube-proxy", c.in(n), nil, c.Binaries.KubeProxy, "--config="+path, "--v=1")
	return err
}

// waitNodesRegistered waits until every node is registered and has its
// podCIDRs from the controller-manager.
func (c *Cluster) waitNodesRegistered(ctx context.Context) error {
	return poll(ctx, "nodes registered with podCIDRs", 3*time.Minute, time.Second, func() error {
		list, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, n := range list.Items {
			if len(n.Spec.PodCIDRs) > 0 {
				have[n.Name] = true
			}
		}
		for _, n := range c.Nodes {
			if !have[n.Name] {
				return fmt.Errorf("%s not registered with podCIDRs yet", n.Name)
			}
		}
		return nil
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return out.Close()
}
