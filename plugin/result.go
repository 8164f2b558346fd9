package plugin

import (
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/weir-cni/weir/conf"
)

// attachment is what ADD built, enough to print a result and to check it.
type attachment struct {
	hostName string
	podName  string
	podMAC   net.HardwareAddr
	sandbox  string
	addrs    []netip.Addr
	routes   []netip.Prefix
	// group is the host end's link group: nsgroup.Of(the pod's
	// namespace), 0 when CNI_ARGS does not name it.
	group uint32
}

// gateway returns the gateway of a's family.
func gateway(a netip.Addr) netip.Addr {
	if a.Is6() {
		return conf.GatewayV6
	}
	return conf.GatewayV4
}

func hostPrefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen())
}

func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// result builds the CNI result (latest version; callers convert). It is pure.
func (at attachment) result() *current.Result {
	podIdx := 1
	r := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: at.hostName, Mac: hostMAC.String()},
			{Name: at.podName, Mac: at.podMAC.String(), Sandbox: at.sandbox},
		},
	}
	for _, a := range at.addrs {
		r.IPs = append(r.IPs, &current.IPConfig{
			Interface: &podIdx,
			Address:   ipNet(hostPrefix(a)),
			Gateway:   gateway(a).AsSlice(),
		})
	}
	for _, dst := range at.routes {
		gw := conf.GatewayV4
		if dst.Addr().Is6() {
			gw = conf.GatewayV6
		}
		if !hasFamily(at.addrs, dst.Addr().Is6()) {
			continue
		}
		r.Routes = append(r.Routes, &types.Route{Dst: ipNet(dst), GW: gw.AsSlice()})
	}
	return r
}

func hasFamily(as []netip.Addr, v6 bool) bool {
	for _, a := range as {
		if a.Is6() == v6 {
			return true
		}
	}
	return false
}
