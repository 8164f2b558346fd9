//go:build integration

package integration

import (
	"fmt"
	"net"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weir-cni/weir/internal/testkit"
)

func TestCheckNoticesDrift(t *testing.T) {
	for _, tc := range []struct {
		name string
		// drift changes the kernel behind the plugin's back.
		drift func(n *node, pod *testkit.NS, hostIf string) error
	}{
		{"pod address removed", func(n *node, pod *testkit.NS, _ string) error {
			return pod.Do(func(ns.NetNS) error {
				l, err := netlink.LinkByName("eth0")
				if err != nil {
					return err
				}
				addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
				if err != nil || len(addrs) == 0 {
					return fmt.Errorf("pod addresses %v: %v", addrs, err)
				}
				return netlink.AddrDel(l, &addrs[0])
			})
		}},
		{"pod default route removed", func(n *node, pod *testkit.NS, _ string) error {
			return pod.Do(func(ns.NetNS) error {
				_, dst, _ := net.ParseCIDR("0.0.0.0/0")
				return netlink.RouteDel(&netlink.Route{Dst: dst, Gw: net.ParseIP("169.254.1.1")})
			})
		}},
		{"host route removed", func(n *node, _ *testkit.NS, hostIf string) error {
			return n.ns.Do(func(ns.NetNS) error {
				l, err := netlink.LinkByName(hostIf)
				if err != nil {
					return err
				}
				rs, err := netlink.RouteList(l, netlink.FAMILY_V4)
				if err != nil || len(rs) == 0 {
					return fmt.Errorf("host routes %v: %v", rs, err)
				}
				return netlink.RouteDel(&rs[0])
			})
		}},
		{"host veth set down", func(n *node, _ *testkit.NS, hostIf string) error {
			return n.ns.Do(func(ns.NetNS) error {
				l, err := netlink.LinkByName(hostIf)
				if err != nil {
					return err
				}
				return netlink.LinkSetDown(l)
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			pod := testkit.NewTestNS(t, "weirt-p-")
			rt := newRuntime(t, n, n.conf("weirnet"))
			rc := rtConf("ctr-drift", pod)
			if _, err := rt.cni.AddNetworkList(ctxT(t), rt.list, rc); err != nil {
				t.Fatalf("add: %v", err)
			}
			if err := rt.cni.CheckNetworkList(ctxT(t), rt.list, rc); err != nil {
				t.Fatalf("check before drift: %v", err)
			}
			links := n.weirLinks()
			if len(links) != 1 {
				t.Fatalf("host veths = %v", links)
			}
			if err := tc.drift(n, pod, links[0]); err != nil {
				t.Fatalf("drift: %v", err)
			}
			err := rt.cni.CheckNetworkList(ctxT(t), rt.list, rc)
			if err == nil {
				t.Fatal("check after drift passed, want an error")
			}
			t.Logf("check after drift: %v", err)
			if err := rt.cni.DelNetworkList(ctxT(t), rt.list, rc); err != nil {
				t.Fatalf("del after drift: %v", err)
			}
			if got := n.allocated("weirnet"); len(got) != 0 {
				t.Errorf("store after del = %v", got)
			}
		})
	}
}
