//go:build integration

package integration

import (
	"bytes"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weir-cni/weir/internal/testkit"
)

// whoamiPort serves testkit.Whoami in the pods and the external namespace.
const whoamiPort = 7070

// remotePod4 stands for a pod on another node: inside the cluster CIDRs
// (172.17.0.0/23) but outside this node's pod CIDR (172.17.0.0/24). The
// external namespace holds it and the node routes it there, as host-gw
// routes another node's pod CIDR.
const remotePod4 = "172.17.1.200"

// masqPods are two pods inside this node's pod CIDRs.
func masqPods() ([]*tpod, map[string]map[string]string) {
	return []*tpod{
		{ns: "default", name: "a", ips: []string{"172.17.0.10", "fd00:17::10"}},
		{ns: "default", name: "b", ips: []string{"172.17.0.11", "fd00:17::11"}},
	}, map[string]map[string]string{"default": {}}
}

// newMasqCluster is the policy cluster with the masquerade cases' extras:
// whoami servers and the remote-pod address.
func newMasqCluster(t *testing.T, opts ...clusterOption) *cluster {
	t.Helper()
	pods, nsLabels := masqPods()
	c := newPolicyCluster(t, pods, nsLabels, opts...)
	if err := c.ext.AddAddrs(remotePod4 + "/32"); err != nil {
		t.Fatal(err)
	}
	err := c.node.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName("ext0")
		if err != nil {
			return err
		}
		dst, _ := netlink.ParseIPNet(remotePod4 + "/32")
		return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: net.ParseIP(extLink4)})
	})
	if err != nil {
		t.Fatalf("route %s to the external namespace: %v", remotePod4, err)
	}
	for _, where := range []*testkit.NS{c.ext, c.pods["default/a"].netns, c.pods["default/b"].netns} {
		w, err := testkit.StartWhoami(where, whoamiPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Close() })
	}
	return c
}

// checkMasquerade connects to whoami servers and checks the source address
// each one saw: the node's address for pod traffic leaving the cluster
// CIDRs, the pod's own address for everything else.
func checkMasquerade(t *testing.T, c *cluster) {
	t.Helper()
	for _, tc := range []struct {
		name     string
		from, to string
		v6       bool
		// seen is the endpoint whose address the far end must see.
		seen string
	}{
		{"pod to outside the cluster leaves with the node's address", "default/a", "ext:10.0.0.5", false, "node"},
		{"pod to outside the cluster leaves with the node's address (IPv6)", "default/a", "ext:fd00:e::5", true, "node"},
		{"pod to pod on the node keeps the pod's address", "default/a", "default/b", false, "default/a"},
		{"pod to pod on the node keeps the pod's address (IPv6)", "default/b", "default/a", true, "default/b"},
		{"pod to a pod on another node keeps the pod's address", "default/a", "ext:" + remotePod4, false, "default/a"},
		{"outside to pod keeps the outside address", "ext:10.0.0.5", "default/a", false, "ext:10.0.0.5"},
		{"outside to pod keeps the outside address (IPv6)", "ext:fd00:e::5", "default/b", true, "ext:fd00:e::5"},
	} {
		srcNS, src := c.endpoint(tc.from, tc.v6)
		_, dst := c.endpoint(tc.to, tc.v6)
		_, want := c.endpoint(tc.seen, tc.v6)
		got, err := testkit.AskWhoami(srcNS, src, dst, whoamiPort)
		if err != nil {
			t.Errorf("%s: %s -> %s: %v", tc.name, src, dst, err)
			continue
		}
		if got != want {
			t.Errorf("%s: %s -> %s arrived from %s, want %s", tc.name, src, dst, got, want)
		}
	}
}

// TestMasqueradeToOutsideTheCluster runs the agent with cluster CIDRs on
// each backend and proves with real connections that its postrouting-masq
// chain rewrites exactly the pod traffic that leaves the cluster CIDRs.
func TestMasqueradeToOutsideTheCluster(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			c := newMasqCluster(t, withBackend(backend))
			checkMasquerade(t, c)
		})
	}
}

// TestAutoBackendFallsBackToIPTablesLegacy runs the agent with the default
// backend (auto) on a "kernel" without nf_tables — a seccomp filter denies
// it nfnetlink sockets — and checks that it programs iptables-legacy, that
// the rules enforce policy and masquerade, and that nothing went to
// nftables.
func TestAutoBackendFallsBackToIPTablesLegacy(t *testing.T) {
	for _, bin := range []string{"iptables-legacy-save", "ip6tables-legacy-save",
		"iptables-legacy-restore", "ip6tables-legacy-restore"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("no %s on this machine: %v", bin, err)
		}
	}
	c := newMasqCluster(t, withoutNFTables())

	for _, save := range []string{"iptables-legacy-save", "ip6tables-legacy-save"} {
		if out := runInNode(t, c, save); !strings.Contains(out, ":WEIR-FORWARD") || !strings.Contains(out, "-j WEIR-FORWARD") {
			t.Errorf("%s in the node holds no WEIR chains hooked into FORWARD:\n%s", save, out)
		}
	}
	if out := runInNode(t, c, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("nftables in the node is not empty after the fallback:\n%s", out)
	}

	t.Run("policy is enforced through iptables-legacy", func(t *testing.T) {
		c.t = t
		c.setPolicies(denyAllDefault)
		c.run([]testkit.Probe{
			tcp("default/a", "default/b", 8080, false),
			v6(tcp("default/a", "default/b", 8080, false)),
			tcp("ext:10.0.0.5", "default/b", 8080, false),
			tcp("node", "default/b", 8080, true),
			tcp("default/b", "ext:10.0.0.5", 80, true),
		})
		c.setPolicies("")
		c.run([]testkit.Probe{tcp("default/a", "default/b", 8080, true)})
	})
	t.Run("masquerade through iptables-legacy", func(t *testing.T) {
		c.t = t
		checkMasquerade(t, c)
	})
}

// runInNode runs a command in the node namespace and returns its stdout.
func runInNode(t *testing.T, c *cluster, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := testkit.RunIn(c.node, cmd); err != nil {
		t.Fatalf("%s %s in the node: %v: %s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}
