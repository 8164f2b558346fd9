package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weir-cni/weir/internal/testkit"
)

// cluster is a node namespace and the two pods the plugin wired into it.
// Namespaces are separate worlds, so two clusters can both use the same
// addresses (and therefore the same ruleset).
type cluster struct {
	dir            string // temp dir: IPAM data
	plugin         string
	node           *testkit.NS
	server, client *testkit.NS
	echo           *testkit.Echo // on deniedPort in the server pod
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
	if err = c.node.AddAddrs(nodeAddr + "/32"); err != nil {
		return c, err
	}
	if c.server, err = c.addPod(ctx, "weirdp-s-", serverNS, "bench-server", serverIP); err != nil {
		return c, err
	}
	if c.client, err = c.addPod(ctx, "weirdp-c-", clientNS, "bench-client", clientIP); err != nil {
		return c, err
	}
	if c.echo, err = testkit.StartEcho(c.server, deniedPort); err != nil {
		return c, fmt.Errorf("echo on port %d: %w", deniedPort, err)
	}
	return c, nil
}

// plugin returns the plugin binary to exec: bin when given, else ./cmd/weir
// built into dir.
func plugin(ctx context.Context, bin, dir string) (string, error) {
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
			"ranges":  []any{map[string]string{"subnet": nodeCIDR}},
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
