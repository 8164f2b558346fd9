//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/weir-cni/weir/internal/testkit"
)

// pluginDir holds the weir binary built for this run (the CNI_PATH).
var pluginDir string

func weirBin() string { return filepath.Join(pluginDir, "weir") }

func TestMain(m *testing.M) {
	// A child this binary started through testkit.WithoutNFTables becomes
	// the real command here, with nf_tables out of its reach.
	if err := testkit.ExecIfAskedWithoutNFTables(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("integration: needs root to create network namespaces; skipping")
		return 0
	}
	dir, err := os.MkdirTemp("", "weir-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	pluginDir = dir
	if err := testkit.GoBuild(context.Background(), "github.com/weir-cni/weir/cmd/weir", weirBin()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// node is a namespace playing a Kubernetes node, with its own IPAM data dir.
type node struct {
	t       *testing.T
	ns      *testkit.NS
	dataDir string
}

func newNode(t *testing.T) *node {
	t.Helper()
	n := &node{t: t, ns: testkit.NewTestNS(t, "weirt-n-"), dataDir: t.TempDir()}
	return n
}

// netConf describes one weir network for a test.
type netConf struct {
	Name    string
	Version string
	Ranges  []map[string]string
	DataDir string
	Extra   map[string]any // merged into the plugin object
}

func subnets(cidrs ...string) []map[string]string {
	var rs []map[string]string
	for _, c := range cidrs {
		rs = append(rs, map[string]string{"subnet": c})
	}
	return rs
}

func (c netConf) plugin() map[string]any {
	ranges := c.Ranges
	if ranges == nil {
		ranges = subnets("10.244.1.0/24")
	}
	// No agent runs in these tests: they opt into fail-open, and the
	// plugin then wires pods without asking one. Extra overrides it; a nil
	// value there leaves a member out.
	p := map[string]any{
		"type":         "weir",
		"ipam":         map[string]any{"ranges": ranges, "dataDir": c.DataDir},
		"capabilities": map[string]bool{"ips": true},
		"failClosed":   false,
		"agentWait":    "0s",
	}
	for k, v := range c.Extra {
		if v == nil {
			delete(p, k)
		} else {
			p[k] = v
		}
	}
	return p
}

func (c netConf) version() string {
	if c.Version == "" {
		return "1.1.0"
	}
	return c.Version
}

// single is the plugin config as a runtime hands it to the plugin on stdin.
func (c netConf) single() []byte {
	p := c.plugin()
	p["cniVersion"] = c.version()
	p["name"] = c.Name
	b, _ := json.Marshal(p)
	return b
}

// list is the conflist a runtime (cnitool, libcni) reads.
func (c netConf) list() []byte {
	b, _ := json.Marshal(map[string]any{
		"cniVersion": c.version(),
		"name":       c.Name,
		"plugins":    []any{c.plugin()},
	})
	return b
}

// conf returns a default single-range network config on this node.
func (n *node) conf(name string) netConf {
	return netConf{Name: name, DataDir: n.dataDir}
}

// exec runs weir in the node for one call.
func (n *node) exec(call testkit.Call) testkit.Outcome {
	n.t.Helper()
	if call.IfName == "" && call.Command != "VERSION" && call.Command != "STATUS" && call.Command != "GC" {
		call.IfName = "eth0"
	}
	if call.Path == "" {
		call.Path = pluginDir
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o, err := call.Exec(ctx, n.ns, weirBin())
	if err != nil {
		n.t.Fatal(err)
	}
	return o
}

// mustOK fails the test unless the plugin succeeded.
func mustOK(t *testing.T, what string, o testkit.Outcome) {
	t.Helper()
	if o.Err != nil || o.ExitCode != 0 {
		t.Fatalf("%s: failed: code %d %q %q (stderr %q)", what, codeOf(o.Err), msgOf(o.Err), detailsOf(o.Err), o.Stderr)
	}
}

func codeOf(e *types.Error) uint {
	if e == nil {
		return 0
	}
	return e.Code
}

func msgOf(e *types.Error) string {
	if e == nil {
		return ""
	}
	return e.Msg
}

func detailsOf(e *types.Error) string {
	if e == nil {
		return ""
	}
	return e.Details
}

// allocated returns what the IPAM store of network name holds.
func (n *node) allocated(name string) []string {
	n.t.Helper()
	as, err := testkit.Allocated(testkit.Store(n.dataDir, name))
	if err != nil {
		n.t.Fatal(err)
	}
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// weirLinks returns the host veths weir made in the node.
func (n *node) weirLinks() []string {
	n.t.Helper()
	ls, err := testkit.WeirLinks(n.ns)
	if err != nil {
		n.t.Fatal(err)
	}
	return ls
}

// links returns every link of the node.
func (n *node) links() []string {
	n.t.Helper()
	ls, err := testkit.Links(n.ns)
	if err != nil {
		n.t.Fatal(err)
	}
	return ls
}
