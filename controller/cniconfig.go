package controller

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weir-cni/weir/conf"
	"github.com/weir-cni/weir/controller/snapshot"
)

// DefaultCNIVersion is the cniVersion of the written conflist when
// CNIConfig.CNIVersion is empty. It is 1.0.0, not the newest 1.1.0 the
// plugin speaks, because runtimes still in the field (containerd 1.6 and
// 1.7, older CRI-O) use a libcni that rejects 1.1.0 results, which leaves
// every pod in ContainerCreating.
const DefaultCNIVersion = "1.0.0"

// CNIConfig writes this node's CNI network configuration from its
// spec.podCIDRs, so the kubelet finds it once the node has ranges.
type CNIConfig struct {
	Node string
	// Path is the conflist to write, e.g. /etc/cni/net.d/10-weir.conflist.
	Path string
	// Name is the network name (default "weir").
	Name string
	// MTU, DataDir and AgentSocket are passed through when set.
	MTU         int
	DataDir     string
	AgentSocket string
	// FailOpen lets the plugin wire pods the agent did not confirm in
	// time. The zero value fails closed: the written config says
	// "failClosed": true either way, so the plugin's default never decides.
	FailOpen bool
	// CNIVersion is the conflist's cniVersion (default DefaultCNIVersion).
	CNIVersion string
	// HostIfPrefix is the plugin's hostInterfacePrefix, written when set
	// and not the default; the agent's anti-spoofing rules match it.
	HostIfPrefix string
}

// Render returns the conflist for podCIDRs, or nil when there are none.
// Pure: equal input gives byte-equal output.
func (c *CNIConfig) Render(podCIDRs []string) ([]byte, error) {
	if len(podCIDRs) == 0 {
		return nil, nil
	}
	name := c.Name
	if name == "" {
		name = "weir"
	}
	cniVersion := c.CNIVersion
	if cniVersion == "" {
		cniVersion = DefaultCNIVersion
	}
	type rng struct {
		Subnet string `json:"subnet"`
	}
	ranges := make([]rng, 0, len(podCIDRs))
	for _, p := range snapshot.ParsePrefixes(podCIDRs, "") {
		ranges = append(ranges, rng{Subnet: p.String()})
	}
	if len(ranges) != len(podCIDRs) {
		return nil, fmt.Errorf("node %s has an unparsable podCIDR in %v", c.Node, podCIDRs)
	}
	plugin := map[string]any{
		"type":         "weir",
		"ipam":         map[string]any{"ranges": ranges},
		"capabilities": map[string]bool{"ips": true},
	}
	if c.MTU > 0 {
		plugin["mtu"] = c.MTU
	}
	if c.DataDir != "" {
		plugin["ipam"].(map[string]any)["dataDir"] = c.DataDir
	}
	if c.AgentSocket != "" {
		plugin["agentSocket"] = c.AgentSocket
	}
	plugin["failClosed"] = !c.FailOpen
	if c.HostIfPrefix != "" && c.HostIfPrefix != conf.DefaultHostPrefix {
		plugin["hostInterfacePrefix"] = c.HostIfPrefix
	}
	list := map[string]any{"cniVersion": cniVersion, "name": name, "plugins": []any{plugin}}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode conflist: %w", err)
	}
	return append(b, '\n'), nil
}

// Reconcile writes the config when this node's podCIDRs call for a
// different one. The write is atomic (temp file + rename): the kubelet
// never reads half a file.
func (c *CNIConfig) Reconcile(o snapshot.Objects) error {
	var cidrs []string
	for _, n := range o.Nodes {
		if n.Name == c.Node {
			cidrs = n.Spec.PodCIDRs
			if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
				cidrs = []string{n.Spec.PodCIDR}
			}
		}
	}
	want, err := c.Render(cidrs)
	if err != nil || want == nil {
		return err
	}
	have, err := os.ReadFile(c.Path)
	if err == nil && bytes.Equal(have, want) {
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", c.Path, err)
	}
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(c.Path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.Path), ".weir-conflist-*")
	if err != nil {
		return fmt.Errorf("write cni config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(want); err != nil {
		tmp.Close()
		return fmt.Errorf("write cni config: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod cni config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write cni config: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.Path); err != nil {
		return fmt.Errorf("install cni config: %w", err)
	}
	return nil
}
