//go:build integration

package integration

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weir-cni/weir/internal/testkit"
)

var (
	gw4 = netip.MustParseAddr("169.254.1.1")
	gw6 = netip.MustParseAddr("fe80::1")
)

// routes renders the routes of netns in one family as "dst via gw dev"
// lines (main table), sorted.
func routes(t *testing.T, netns ns.NetNS, family int) []string {
	t.Helper()
	var out []string
	err := netns.Do(func(ns.NetNS) error {
		rs, err := netlink.RouteListFiltered(family, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("list routes: %w", err)
		}
		for _, r := range rs {
			dst := "default"
			if r.Dst != nil {
				if ones, bits := r.Dst.Mask.Size(); ones != 0 || bits == 0 {
					dst = r.Dst.String()
				}
			}
			dev := ""
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				dev = l.Attrs().Name
			}
			line := dst
			if r.Gw != nil {
				line += " via " + r.Gw.String()
			}
			out = append(out, line+" dev "+dev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// podIPs returns the addresses a result gives the pod.
func podIPs(t *testing.T, r types.Result) []netip.Addr {
	t.Helper()
	cur, err := current.NewResultFromResult(r)
	if err != nil {
		t.Fatalf("convert result: %v", err)
	}
	var out []netip.Addr
	for _, ip := range cur.IPs {
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			t.Fatalf("result address %v", ip.Address)
		}
		out = append(out, a.Unmap())
	}
	return out
}

// checkWired verifies in the kernel what ADD promised for one pod: its
// addresses on ifname as /32 and /128, default routes via the gateways, a
// host route to each address via the host veth, and one weir host veth per
// attachment.
func checkWired(t *testing.T, n *node, pod *testkit.NS, ifname string, ips []netip.Addr) {
	t.Helper()
	got, err := testkit.LinkAddrs(pod, ifname)
	if err != nil {
		t.Fatal(err)
	}
	var want []netip.Prefix
	for _, a := range ips {
		want = append(want, netip.PrefixFrom(a, a.BitLen()))
	}
	slices.SortFunc(want, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	if !slices.Equal(got, want) {
		t.Errorf("pod %s addresses = %v, want %v", ifname, got, want)
	}
	for _, a := range ips {
		family, gw := netlink.FAMILY_V4, gw4
		if a.Is6() {
			family, gw = netlink.FAMILY_V6, gw6
		}
		pr := routes(t, pod, family)
		if wantR := "default via " + gw.String() + " dev " + ifname; !slices.Contains(pr, wantR) {
			t.Errorf("pod routes %v lack %q", pr, wantR)
		}
		hr := routes(t, n.ns, family)
		prefix := netip.PrefixFrom(a, a.BitLen()).String()
		hostRoute := ""
		for _, r := range hr {
			var dst, dev string
			if _, err := fmt.Sscanf(r, "%s dev %s", &dst, &dev); err == nil && dst == prefix {
				hostRoute = r
				if !slices.Contains(n.weirLinks(), dev) {
					t.Errorf("node route %q: %s is not a weir host veth (alias %q...)", r, dev, testkit.HostAliasPrefix)
				}
			}
		}
		if hostRoute == "" {
			t.Errorf("node has no host route %s", prefix)
		}
	}
}

// checkReleased verifies that network name left nothing behind on the node
// or in the pod after what (e.g. "del again"): no stored address, no host
// veth, no pod interface eth0.
func checkReleased(t *testing.T, n *node, name string, pod *testkit.NS, what string) {
	t.Helper()
	if got := n.allocated(name); len(got) != 0 {
		t.Errorf("store after %s = %v, want empty", what, got)
	}
	if got := n.weirLinks(); len(got) != 0 {
		t.Errorf("host veths after %s = %v, want none", what, got)
	}
	checkGone(t, pod, "eth0")
}

// checkGone verifies the pod interface is gone.
func checkGone(t *testing.T, pod *testkit.NS, ifname string) {
	t.Helper()
	err := pod.Do(func(ns.NetNS) error {
		_, err := netlink.LinkByName(ifname)
		return err
	})
	if err == nil {
		t.Errorf("pod still has %s", ifname)
	}
}
