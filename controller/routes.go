package controller

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"github.com/weir-cni/weir/controller/snapshot"
	"golang.org/x/sys/unix"
)

// RouteProto marks the routes weir-agent owns (rtnetlink protocol number),
// so it replaces and removes only its own.
const RouteProto netlink.RouteProtocol = 0x77

// NodeRoute sends one remote pod CIDR to the node that owns it (host-gw).
type NodeRoute struct {
	Dst netip.Prefix
	Via netip.Addr
}

// DesiredRoutes computes the host-gw routes of node self: every other
// node's pod CIDRs via that node's InternalIP of the same family. Nodes
// without an address of the family are skipped. Pure and sorted.
func DesiredRoutes(self string, o snapshot.Objects) []NodeRoute {
	var out []NodeRoute
	for _, n := range o.Nodes {
		if n.Name == self {
			continue
		}
		ips := snapshot.InternalIPs(n)
		for _, cidr := range snapshot.ParsePrefixes(n.Spec.PodCIDRs, n.Spec.PodCIDR) {
			for _, ip := range ips {
				if ip.Is6() == cidr.Addr().Is6() {
					out = append(out, NodeRoute{Dst: cidr, Via: ip})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dst.String() < out[j].Dst.String() })
	return out
}

// RouteSyncer keeps the kernel's weir-owned routes equal to DesiredRoutes.
type RouteSyncer struct {
	Node string
}

// Reconcile adds missing routes, replaces changed ones and deletes the
// ones whose node is gone. Only routes with RouteProto are touched.
func (r *RouteSyncer) Reconcile(o snapshot.Objects) error {
	want := map[netip.Prefix]NodeRoute{}
	for _, nr := range DesiredRoutes(r.Node, o) {
		want[nr.Dst] = nr
	}
	have, err := ownedRoutes()
	if err != nil {
		return err
	}
	var errs []error
	for dst, rt := range have {
		nr, ok := want[dst]
		if ok && rt.Gw.Equal(nr.Via.AsSlice()) {
			delete(want, dst)
			continue
		}
		if !ok {
			if err := netlink.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("delete route %s: %w", dst, err))
			}
		}
	}
	for _, nr := range want {
		d := net.IPNet{IP: nr.Dst.Addr().AsSlice(), Mask: net.CIDRMask(nr.Dst.Bits(), nr.Dst.Addr().BitLen())}
		rt := &netlink.Route{Dst: &d, Gw: nr.Via.AsSlice(), Protocol: RouteProto}
		if err := netlink.RouteReplace(rt); err != nil {
			errs = append(errs, fmt.Errorf("ensure route %s via %s: %w", nr.Dst, nr.Via, err))
		}
	}
	return errors.Join(errs...)
}

// ownedRoutes lists the routes of the main table carrying RouteProto.
func ownedRoutes() (map[netip.Prefix]netlink.Route, error) {
	out := map[netip.Prefix]netlink.Route{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlinksafe.RouteListFiltered(fam, &netlink.Route{Protocol: RouteProto}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, rt := range rs {
			if rt.Dst == nil {
				continue
			}
			a, ok := netip.AddrFromSlice(rt.Dst.IP)
			if !ok {
				continue
			}
			ones, _ := rt.Dst.Mask.Size()
			out[netip.PrefixFrom(a.Unmap(), ones)] = rt
		}
	}
	return out, nil
}
