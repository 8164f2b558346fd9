//go:build integration

package controller

import (
	"net"
	"sort"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/weir-cni/weir/controller/snapshot"
	corev1 "k8s.io/api/core/v1"

	"github.com/weir-cni/weir/internal/testkit"
)

func TestRouteSyncerOwnsOnlyItsRoutes(t *testing.T) {
	n := testkit.NewTestNS(t, "weirt-cr-")
	list := func() []string {
		var out []string
		rs, _ := netlink.RouteList(nil, netlink.FAMILY_ALL)
		for _, r := range rs {
			if r.Dst != nil && r.Gw != nil {
				out = append(out, r.Dst.String()+" via "+r.Gw.String())
			}
		}
		sort.Strings(out)
		return out
	}
	err := n.Do(func(ns.NetNS) error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "under0"}, PeerName: "under1"}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		_ = netlink.LinkSetUp(veth)
		addr, _ := netlink.ParseAddr("192.168.0.1/24")
		_ = netlink.AddrAdd(veth, addr)
		// A route someone else owns, to a CIDR weir would also want.
		_, foreign, _ := net.ParseCIDR("10.99.0.0/16")
		if err := netlink.RouteAdd(&netlink.Route{Dst: foreign, Gw: net.ParseIP("192.168.0.9")}); err != nil {
			return err
		}
		r := &RouteSyncer{Node: "self"}
		objs := snapshot.Objects{Nodes: []*corev1.Node{
			node("self", []string{"10.244.1.0/24"}, "192.168.0.1"),
			node("b", []string{"10.244.2.0/24"}, "192.168.0.2"),
			node("c", []string{"10.244.3.0/24"}, "192.168.0.3"),
		}}
		if err := r.Reconcile(objs); err != nil {
			t.Fatal(err)
		}
		got := list()
		want := []string{"10.244.2.0/24 via 192.168.0.2", "10.244.3.0/24 via 192.168.0.3", "10.99.0.0/16 via 192.168.0.9"}
		if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Errorf("after add: %v, want %v", got, want)
		}
		// Node c goes away and b moves: routes follow, the foreign one stays.
		objs.Nodes = []*corev1.Node{node("self", nil, "192.168.0.1"), node("b", []string{"10.244.2.0/24"}, "192.168.0.22")}
		if err := r.Reconcile(objs); err != nil {
			t.Fatal(err)
		}
		got = list()
		want = []string{"10.244.2.0/24 via 192.168.0.22", "10.99.0.0/16 via 192.168.0.9"}
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("after change: %v, want %v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
