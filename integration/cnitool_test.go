//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/weir-cni/weir/internal/testkit"
)

// findTool locates a Go tool installed by `make tools` (bin/tools), on
// PATH, or in $GOPATH/bin.
func findTool(t *testing.T, name string) string {
	t.Helper()
	cands := []string{filepath.Join("..", "bin", "tools", name)}
	if p, err := exec.LookPath(name); err == nil {
		cands = append(cands, p)
	}
	if home, err := os.UserHomeDir(); err == nil {
		cands = append(cands, filepath.Join(home, "go", "bin", name))
	}
	for _, c := range cands {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			abs, _ := filepath.Abs(c)
			return abs
		}
	}
	t.Fatalf("%s not found in %v: run `make tools`", name, cands)
	return ""
}

// cnitool runs cnitool inside the node with a conflist in its own NETCONFPATH.
func cnitool(t *testing.T, n *node, netDir string, env []string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, findTool(t, "cnitool"), args...)
	cmd.Env = append([]string{"CNI_PATH=" + pluginDir, "NETCONFPATH=" + netDir,
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := testkit.RunIn(n.ns, cmd)
	if err != nil {
		t.Logf("cnitool %v: %v\nstdout: %s\nstderr: %s", args, err, out.Bytes(), errb.Bytes())
	}
	return out.Bytes(), err
}

func writeConfList(t *testing.T, c netConf) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "10-"+c.Name+".conflist"), c.list(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCnitoolAddCheckDelDel(t *testing.T) {
	n := newNode(t)
	pod := testkit.NewTestNS(t, "weirt-p-")
	c := n.conf("weirnet")
	dir := writeConfList(t, c)

	out, err := cnitool(t, n, dir, nil, "add", c.Name, pod.Path())
	if err != nil {
		t.Fatal("add failed")
	}
	var res current.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("decode add result %q: %v", out, err)
	}
	if res.CNIVersion != "1.1.0" {
		t.Errorf("result cniVersion = %q, want 1.1.0", res.CNIVersion)
	}
	ips := podIPs(t, &res)
	if len(ips) != 1 || !netip.MustParsePrefix("10.244.1.0/24").Contains(ips[0]) {
		t.Fatalf("add gave %v, want one address of 10.244.1.0/24", ips)
	}
	checkWired(t, n, pod, "eth0", ips)
	if got := n.allocated(c.Name); !slices.Equal(got, []string{ips[0].String()}) {
		t.Errorf("store after add = %v, want [%s]", got, ips[0])
	}

	if _, err := cnitool(t, n, dir, nil, "check", c.Name, pod.Path()); err != nil {
		t.Fatal("check of a freshly added pod failed")
	}
	for _, round := range []string{"del", "del again"} {
		if _, err := cnitool(t, n, dir, nil, "del", c.Name, pod.Path()); err != nil {
			t.Fatalf("%s failed", round)
		}
		checkReleased(t, n, c.Name, pod, round)
	}
}

func TestCnitoolRequestedIPThroughCapability(t *testing.T) {
	n := newNode(t)
	pod := testkit.NewTestNS(t, "weirt-p-")
	c := n.conf("weirnet")
	c.Ranges = subnets("10.244.1.0/24", "fd00:10:244:1::/64")
	dir := writeConfList(t, c)

	env := []string{`CAP_ARGS={"ips":["10.244.1.77/24","fd00:10:244:1::77/64"]}`}
	out, err := cnitool(t, n, dir, env, "add", c.Name, pod.Path())
	if err != nil {
		t.Fatal("add failed")
	}
	var res current.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("decode add result %q: %v", out, err)
	}
	want := []netip.Addr{netip.MustParseAddr("10.244.1.77"), netip.MustParseAddr("fd00:10:244:1::77")}
	if got := podIPs(t, &res); !slices.Equal(got, want) {
		t.Fatalf("add gave %v, want the requested %v", got, want)
	}
	checkWired(t, n, pod, "eth0", want)
	if _, err := cnitool(t, n, dir, env, "del", c.Name, pod.Path()); err != nil {
		t.Fatal("del failed")
	}
	if got := n.allocated(c.Name); len(got) != 0 {
		t.Errorf("store after del = %v, want empty", got)
	}
}
