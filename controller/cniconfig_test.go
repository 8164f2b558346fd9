package controller

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	corev1 "k8s.io/api/core/v1"

	"github.com/weir-cni/weir/conf"
	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/policy"
)

func TestCNIConfigIsValidForThePlugin(t *testing.T) {
	c := &CNIConfig{Node: "n1", MTU: 1450, DataDir: "/var/lib/x", AgentSocket: "/run/x.sock", HostIfPrefix: "cali"}
	b, err := c.Render([]string{"10.244.1.0/24", "fd00:1::/64"})
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string            `json:"cniVersion"`
		Name       string            `json:"name"`
		Plugins    []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil || len(list.Plugins) != 1 {
		t.Fatalf("conflist %s: %v", b, err)
	}
	// libcni hands each plugin its conf with name and cniVersion injected.
	nc, err := conf.Load(injected(list.Plugins[0], list.Name, list.CNIVersion), "")
	if err != nil {
		t.Fatalf("plugin rejects the config the agent writes: %v\n%s", err, b)
	}
	if len(nc.Ranges) != 2 || nc.MTU != 1450 || nc.DataDir != "/var/lib/x" || nc.AgentSocket != "/run/x.sock" || !nc.FailClosed ||
		nc.HostIfPrefix != "cali" {
		t.Errorf("round trip lost fields: %+v", nc)
	}
}

// TestPodInterfacePrefixIsThePlugins pins that the anti-spoofing rules
// match the host veths the plugin names by default.
func TestPodInterfacePrefixIsThePlugins(t *testing.T) {
	if policy.DefaultPodInterfacePrefix != conf.DefaultHostPrefix {
		t.Errorf("policy.DefaultPodInterfacePrefix = %q, the plugin names host veths %q...", policy.DefaultPodInterfacePrefix, conf.DefaultHostPrefix)
	}
}

// TestCNIConfigFailsClosedUnlessToldOtherwise pins what the plugin does
// with the written config when the agent does not confirm a pod, and that
// the config says so itself rather than leaving it to the plugin's default.
func TestCNIConfigFailsClosedUnlessToldOtherwise(t *testing.T) {
	cases := []struct {
		name           string
		c              CNIConfig
		wantFailClosed bool
	}{
		{"zero value fails closed", CNIConfig{Node: "n1"}, true},
		{"fail-open only when asked", CNIConfig{Node: "n1", FailOpen: true}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.c.Render([]string{"10.244.1.0/24"})
			if err != nil {
				t.Fatal(err)
			}
			list, err := libcni.ConfListFromBytes(b)
			if err != nil || len(list.Plugins) != 1 {
				t.Fatalf("conflist %s: %v", b, err)
			}
			var raw map[string]any
			_ = json.Unmarshal(list.Plugins[0].Bytes, &raw)
			if raw["failClosed"] != tc.wantFailClosed {
				t.Errorf("written failClosed = %v, want %v explicitly\n%s", raw["failClosed"], tc.wantFailClosed, b)
			}
			nc, err := conf.Load(injected(list.Plugins[0].Bytes, list.Name, list.CNIVersion), "")
			if err != nil {
				t.Fatal(err)
			}
			if nc.FailClosed != tc.wantFailClosed {
				t.Errorf("plugin reads failClosed = %v, want %v", nc.FailClosed, tc.wantFailClosed)
			}
		})
	}
}

// injected is a conflist's plugin conf as libcni hands it to the plugin,
// with the list's name and cniVersion.
func injected(plugin []byte, name, cniVersion string) []byte {
	var m map[string]any
	_ = json.Unmarshal(plugin, &m)
	m["name"], m["cniVersion"] = name, cniVersion
	b, _ := json.Marshal(m)
	return b
}

// TestCNIConfigWritesTheRequestedCNIVersion pins the conflist's cniVersion
// as libcni reads it: 1.0.0 unless asked otherwise, because runtimes in the
// field reject 1.1.0 results.
func TestCNIConfigWritesTheRequestedCNIVersion(t *testing.T) {
	cases := []struct {
		name, version, want string
	}{
		{"default is 1.0.0 for runtimes without 1.1.0", "", "1.0.0"},
		{"explicit 1.1.0 is written as is", "1.1.0", "1.1.0"},
		{"explicit 0.4.0 is written as is", "0.4.0", "0.4.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &CNIConfig{Node: "n1", CNIVersion: tc.version}
			b, err := c.Render([]string{"10.244.1.0/24"})
			if err != nil {
				t.Fatal(err)
			}
			list, err := libcni.ConfListFromBytes(b)
			if err != nil {
				t.Fatalf("libcni rejects the conflist: %v\n%s", err, b)
			}
			if list.CNIVersion != tc.want {
				t.Errorf("cniVersion = %q, want %q\n%s", list.CNIVersion, tc.want, b)
			}
			if len(list.Plugins) != 1 || list.Plugins[0].Network.Type != "weir" {
				t.Errorf("plugins = %+v", list.Plugins)
			}
		})
	}
}

func TestCNIConfigReconcileWritesOnlyOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "net.d", "10-weir.conflist")
	c := &CNIConfig{Node: "n1", Path: path}
	if err := c.Reconcile(snapshot.Objects{Nodes: []*corev1.Node{node("n1", nil)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("config written for a node without podCIDRs")
	}
	objs := snapshot.Objects{Nodes: []*corev1.Node{node("n1", []string{"10.244.1.0/24"}), node("n2", []string{"10.244.2.0/24"})}}
	if err := c.Reconcile(objs); err != nil {
		t.Fatal(err)
	}
	st1, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reconcile(objs); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(path)
	if !st1.ModTime().Equal(st2.ModTime()) || st1.Sys() == nil {
		t.Error("unchanged config rewritten")
	}
	b, _ := os.ReadFile(path)
	if !json.Valid(b) || !contains(string(b), "10.244.1.0/24") || contains(string(b), "10.244.2.0/24") {
		t.Errorf("config = %s", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temp files left: %v", entries)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestDesiredRoutes(t *testing.T) {
	objs := snapshot.Objects{Nodes: []*corev1.Node{
		node("self", []string{"10.244.1.0/24"}, "192.168.0.1"),
		node("b", []string{"10.244.2.0/24", "fd00:2::/64"}, "192.168.0.2", "fd00:ff::2"),
		node("c", []string{"10.244.3.0/24", "fd00:3::/64"}, "192.168.0.3"), // no IPv6 address: no v6 route
		node("d", nil, "192.168.0.4"),                                      // no CIDR yet
	}}
	got := DesiredRoutes("self", objs)
	want := []string{"10.244.2.0/24 via 192.168.0.2", "10.244.3.0/24 via 192.168.0.3", "fd00:2::/64 via fd00:ff::2"}
	if len(got) != len(want) {
		t.Fatalf("routes = %v", got)
	}
	for i, r := range got {
		if s := r.Dst.String() + " via " + r.Via.String(); s != want[i] {
			t.Errorf("route %d = %s, want %s", i, s, want[i])
		}
	}
}
