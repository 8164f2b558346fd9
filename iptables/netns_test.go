//go:build integration

package iptables

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/policy"
)

// hostMAC is the MAC of every host-side veth: pods reach their gateway
// through a permanent neighbour entry pointing at it (Calico style).
const hostMAC = "ee:ee:ee:ee:ee:ee"

// host is a namespace wired to the node by a veth pair: a pod, or an
// "external" host routed through the node.
type host struct {
	name  string   // netns name
	netns ns.NetNS // open until the test ends
	ips   []netip.Addr
	veth  string // its end in the node namespace
}

// topology is one node namespace and its hosts.
type topology struct {
	node      string
	nodePath  string
	hosts     map[string]*host
	nextVeth  int
	nameStart string
}

// run is testkit.Run.
var run = testkit.Run

// addNetns creates a uniquely named netns and deletes it when the test ends,
// failed or not.
func addNetns(t testing.TB, prefix string) (name, path string) {
	n := testkit.NewTestNS(t, "weirt-ipt-"+prefix+"-")
	return n.Name, n.Path()
}

// newTopology makes a node namespace with forwarding on and IPv4's
// rp_filter off (so that only weir's anti-spoofing check stands between a
// pod and a spoofed source); everything weir programs goes there.
func newTopology(t testing.TB, tag string) *topology {
	t.Helper()
	node, path := addNetns(t, tag)
	run(t, "ip", "-n", node, "link", "set", "lo", "up")
	run(t, "ip", "netns", "exec", node, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
	return &topology{node: node, nodePath: path, hosts: map[string]*host{}, nameStart: tag}
}

// addHost wires a namespace to the node: eth0 with /32 and /128 addresses,
// default routes via 169.254.1.1 and fe80::1 (permanent neighbours at the
// host veth), and on the node a host route and a permanent neighbour for
// each address, so that no ARP or ND timing is involved.
func (tp *topology) addHost(t testing.TB, key string, ips ...string) *host {
	t.Helper()
	tp.nextVeth++
	netns := testkit.NewTestNS(t, fmt.Sprintf("weirt-ipt-%s%d-", tp.nameStart, tp.nextVeth))
	name := netns.Name
	// Named like the plugin's host ends, so the anti-spoofing check
	// (policy.DefaultPodInterfacePrefix) applies to every host here.
	veth := fmt.Sprintf("%s%d", policy.DefaultPodInterfacePrefix, tp.nextVeth)
	h := &host{name: name, netns: netns, veth: veth}
	podMAC := fmt.Sprintf("02:00:00:00:00:%02x", tp.nextVeth)
	run(t, "ip", "-n", tp.node, "link", "add", veth, "address", hostMAC, "type", "veth",
		"peer", "name", "eth0", "address", podMAC, "netns", name)
	run(t, "ip", "-n", tp.node, "link", "set", veth, "up")
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	run(t, "ip", "-n", name, "link", "set", "eth0", "up")
	v4, v6 := false, false
	for _, s := range ips {
		ip := netip.MustParseAddr(s)
		h.ips = append(h.ips, ip)
		if ip.Is4() {
			v4 = true
			run(t, "ip", "-n", name, "addr", "add", ip.String()+"/32", "dev", "eth0")
			run(t, "ip", "-n", tp.node, "route", "add", ip.String()+"/32", "dev", veth)
		} else {
			v6 = true
			run(t, "ip", "-n", name, "addr", "add", ip.String()+"/128", "dev", "eth0", "nodad")
			run(t, "ip", "-n", tp.node, "-6", "route", "add", ip.String()+"/128", "dev", veth)
		}
		run(t, "ip", "-n", tp.node, "neigh", "replace", ip.String(), "lladdr", podMAC, "dev", veth, "nud", "permanent")
	}
	if v4 {
		run(t, "ip", "-n", name, "neigh", "replace", "169.254.1.1", "lladdr", hostMAC, "dev", "eth0", "nud", "permanent")
		run(t, "ip", "-n", name, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
		run(t, "ip", "-n", name, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
	}
	if v6 {
		run(t, "ip", "-n", name, "-6", "neigh", "replace", "fe80::1", "lladdr", hostMAC, "dev", "eth0", "nud", "permanent")
		run(t, "ip", "-n", name, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
	}
	tp.hosts[key] = h
	return h
}

// addNode makes the node namespace a host too: addr on its loopback, one
// of the node's own addresses, so that pods' packets to it meet the input
// hook.
func (tp *topology) addNode(t testing.TB, key, addr string) *host {
	t.Helper()
	run(t, "ip", "-n", tp.node, "addr", "add", addr+"/32", "dev", "lo")
	netns, err := ns.GetNS(tp.nodePath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.Close() })
	h := &host{name: tp.node, netns: netns, ips: []netip.Addr{netip.MustParseAddr(addr)}}
	tp.hosts[key] = h
	return h
}
