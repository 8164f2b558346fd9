package datapath

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/policy"
)

// The node of a testbed is synth.NodeName, which owns synth.NodeCIDR; its
// two pods sit in that range, in production namespaces of synth.Cluster
// (even index), so that its policies apply to them.
const (
	NodeName = synth.NodeName
	NodeAddr = synth.NodeAddr
	NodeCIDR = synth.NodeCIDR

	ServerIP = "10.0.0.10"
	ClientIP = "10.0.0.11"
	ServerNS = "ns0"
	ClientNS = "ns2"

	// DeniedPort is served too (by an echo server), allowed by no policy.
	DeniedPort = 5202
)

// Pods are the testbed's two pods as a policy snapshot holds them: the
// server (ServerNS, app0, db) with serverPorts, the client (ClientNS,
// app2, frontend).
func Pods(serverPorts ...policy.ContainerPort) []policy.Pod {
	return []policy.Pod{
		{Namespace: ServerNS, Name: "bench-server", Node: NodeName,
			Labels: map[string]string{"app": "app0", "role": "db"},
			IPs:    []netip.Addr{netip.MustParseAddr(ServerIP)},
			Ports:  serverPorts},
		{Namespace: ClientNS, Name: "bench-client", Node: NodeName,
			Labels: map[string]string{"app": "app2", "role": "frontend"},
			IPs:    []netip.Addr{netip.MustParseAddr(ClientIP)}},
	}
}

// Testbed is a node with its two pods, the server thread and the client.
type Testbed struct {
	*cluster
	srv *Server
	// Client measures from the client pod to the server's port.
	Client Client
}

// NewTestbed builds a node and its two pods with the plugin binary at
// pluginBin, and starts the server on port, pinned to serverCPU; its
// Client is pinned to clientCPU. On error, what was built is already
// removed.
func NewTestbed(ctx context.Context, pluginBin string, port, clientCPU, serverCPU int) (*Testbed, error) {
	c, err := newCluster(ctx, pluginBin)
	if err != nil {
		return nil, err
	}
	srv, err := StartServer(c.server.Path(), port, serverCPU)
	if err != nil {
		return nil, errors.Join(err, c.Close())
	}
	fmt.Printf("node %s: server %s (%s/bench-server %s), client %s (%s/bench-client %s)\n",
		c.node.Name, c.server.Name, ServerNS, ServerIP, c.client.Name, ClientNS, ClientIP)
	return &Testbed{cluster: c, srv: srv,
		Client: Client{NSPath: c.client.Path(), CPU: clientCPU, Dst: netip.MustParseAddr(ServerIP), Port: port}}, nil
}

// Node is the testbed's node namespace.
func (t *Testbed) Node() *testkit.NS { return t.node }

// ClientNS is the client pod's namespace.
func (t *Testbed) ClientNS() *testkit.NS { return t.client }

// PrintBare measures the testbed once for d, before any table is
// applied to its node, and prints the figures (nodes compared by
// separate rounds must be alike).
func (t *Testbed) PrintBare(ctx context.Context, d time.Duration) error {
	var s Samples
	if err := Measure(ctx, t.Client, &s, d); err != nil {
		return fmt.Errorf("node %s without a table: %w", t.node.Name, err)
	}
	fmt.Printf("node %s without a table: %.2f Gbit/s, %.1f µs, %.0f conn/s\n", t.node.Name, s.Gbps[0], s.P50[0], s.Conns[0])
	return nil
}

// Close stops the server and removes the namespaces.
func (t *Testbed) Close() error {
	err := t.srv.Close()
	if f := t.srv.failed.Load(); f > 0 {
		fmt.Printf("note: %d connections ended in an error on the server of %s\n", f, t.node.Name)
	}
	return errors.Join(err, t.cluster.Close())
}

// cluster is a node namespace and the two pods the plugin wired into it.
// Namespaces are separate worlds, so two clusters can both use the same
// addresses (and therefore the same ruleset).
type cluster struct {
	dir            string // temp dir: IPAM data
	plugin         string
	node           *testkit.NS
	server, client *testkit.NS
	echo           *testkit.Echo // on DeniedPort in the server pod
}

// newCluster builds a node and its two pods with the plugin binary at
// pluginBin. On error, what was built is already removed.
func newCluster(ctx context.Context, pluginBin string) (c *cluster, err error) {
	c = &cluster{plugin: pluginBin}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	if c.dir, err = os.MkdirTemp("", "weir-dataplane-"); err != nil {
		return c, err
	}
	if c.node, err = testkit.NewNS("weirdp-n-"); err != nil {
		return c, err
	}
	if err = c.node.AddAddrs(NodeAddr + "/32"); err != nil {
		return c, err
	}
	if c.server, err = c.addPod(ctx, "weirdp-s-", ServerNS, "bench-server", ServerIP); err != nil {
		return c, err
	}
	if c.client, err = c.addPod(ctx, "weirdp-c-", ClientNS, "bench-client", ClientIP); err != nil {
		return c, err
	}
	if c.echo, err = testkit.StartEcho(c.server, DeniedPort); err != nil {
		return c, fmt.Errorf("echo on port %d: %w", DeniedPort, err)
	}
	return c, nil
}

// Plugin returns the plugin binary to exec: bin when given, else ./cmd/weir
// built into dir.
func Plugin(ctx context.Context, bin, dir string) (string, error) {
	if bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("plugin binary: %w", err)
		}
		return abs, nil
	}
	out := filepath.Join(dir, "weir")
	if err := testkit.GoBuild(ctx, "github.com/weir-cni/weir/cmd/weir", out); err != nil {
		return "", fmt.Errorf("%w (run from the module, or pass -weir)", err)
	}
	return out, nil
}

// netconf is the node's CNI config. No agent runs: fail-open with agentWait
// 0 and a socket path of our own, so the plugin never talks to a real
// node's agent.
func (c *cluster) netconf() []byte {
	b, _ := json.Marshal(map[string]any{
		"cniVersion": "1.1.0", "name": "weir-dataplane", "type": "weir",
		"agentWait": "0s", "failClosed": false, "agentSocket": filepath.Join(c.dir, "agent.sock"),
		"ipam": map[string]any{
			"ranges":  []any{map[string]string{"subnet": NodeCIDR}},
			"dataDir": filepath.Join(c.dir, "ipam"),
		},
	})
	return b
}

// addPod creates a pod namespace and runs the plugin's ADD for it inside
// the node namespace, asking for ip.
func (c *cluster) addPod(ctx context.Context, prefix, namespace, name, ip string) (*testkit.NS, error) {
	pod, err := testkit.NewNS(prefix)
	if err != nil {
		return nil, err
	}
	call := testkit.Call{Command: "ADD", ContainerID: "dataplane-" + name, Netns: pod.Path(), IfName: "eth0",
		Args: "K8S_POD_NAMESPACE=" + namespace + ";K8S_POD_NAME=" + name + ";IP=" + ip,
		Path: filepath.Dir(c.plugin), Conf: c.netconf()}
	out, err := call.Exec(ctx, c.node, c.plugin)
	if err == nil && out.Err != nil {
		err = out.Err
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("weir ADD %s/%s: %w", namespace, name, err), pod.Delete())
	}
	return pod, nil
}

// Close removes the namespaces (the veths go with them) and the temp dir.
func (c *cluster) Close() error {
	var errs []error
	if c.echo != nil {
		errs = append(errs, c.echo.Close())
	}
	for _, n := range []*testkit.NS{c.client, c.server, c.node} {
		if n != nil {
			errs = append(errs, n.Delete())
		}
	}
	if c.dir != "" {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	return errors.Join(errs...)
}
