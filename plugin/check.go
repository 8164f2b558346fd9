package plugin

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/weir-cni/weir/conf"
	"github.com/weir-cni/weir/ipam"
	"github.com/weir-cni/weir/nsgroup"
)

// cmdCheck compares what ADD reported (prevResult) with the kernel and the
// address store, and fails on the first difference.
func cmdCheck(args *skel.CmdArgs) error {
	c, err := load(args)
	if err != nil {
		return err
	}
	if c.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "prevResult is required for CHECK", "")
	}
	prev, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "convert prevResult", err.Error())
	}
	want, err := expected(c, args, prev)
	if err != nil {
		return err
	}
	if err := checkStore(c, args, want.addrs); err != nil {
		return err
	}
	if err := checkHost(c, args, want); err != nil {
		return err
	}
	return checkPod(args, want)
}

// expected reads the attachment back out of prevResult.
func expected(c *conf.NetConf, args *skel.CmdArgs, prev *current.Result) (*attachment, error) {
	at := &attachment{hostName: HostVethName(c.HostIfPrefix, args.ContainerID, args.IfName), podName: args.IfName,
		group: nsgroup.Of(c.PodNamespace)}
	podIdx := -1
	for i, intf := range prev.Interfaces {
		if intf.Name == args.IfName && intf.Sandbox != "" {
			podIdx = i
			mac, err := net.ParseMAC(intf.Mac)
			if err != nil {
				return nil, checkErr("prevResult interface %s has mac %q", intf.Name, intf.Mac)
			}
			at.podMAC = mac
		}
	}
	if podIdx < 0 {
		return nil, checkErr("prevResult has no interface %s in a sandbox", args.IfName)
	}
	for _, ipc := range prev.IPs {
		if ipc.Interface != nil && *ipc.Interface != podIdx {
			continue
		}
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			return nil, checkErr("prevResult address %v is invalid", ipc.Address)
		}
		at.addrs = append(at.addrs, a.Unmap())
	}
	for _, r := range prev.Routes {
		p, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		at.routes = append(at.routes, netip.PrefixFrom(p.Unmap(), ones))
	}
	return at, nil
}

func checkErr(format string, a ...any) error {
	return types.NewError(types.ErrInternal, "check failed", fmt.Sprintf(format, a...))
}

func checkStore(c *conf.NetConf, args *skel.CmdArgs, want []netip.Addr) error {
	store, err := openIPAM(c)
	if err != nil {
		return err
	}
	defer store.Close()
	got, err := store.Get(ipam.Attachment{ContainerID: args.ContainerID, IfName: args.IfName})
	if err != nil {
		return types.NewError(types.ErrIOFailure, "read address store", err.Error())
	}
	for _, a := range want {
		if !slices.Contains(got, a) {
			return checkErr("address %s is not reserved for %s/%s (store has %v)", a, args.ContainerID, args.IfName, got)
		}
	}
	return nil
}

func checkHost(c *conf.NetConf, args *skel.CmdArgs, want *attachment) error {
	link, err := netlinksafe.LinkByName(want.hostName)
	if err != nil {
		return checkErr("host interface %s: %v", want.hostName, err)
	}
	if got := link.Attrs().Alias; got != alias(c.Name, args.ContainerID, args.IfName) {
		return checkErr("host interface %s belongs to %q", want.hostName, got)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return checkErr("host interface %s is down", want.hostName)
	}
	if got := link.Attrs().Group; got != want.group {
		return checkErr("host interface %s is in link group %d, want %d (namespace %q)", want.hostName, got, want.group, c.PodNamespace)
	}
	for _, a := range want.addrs {
		if err := hasRoute(nil, link, hostPrefix(a), netip.Addr{}); err != nil {
			return err
		}
	}
	return nil
}

func checkPod(args *skel.CmdArgs, want *attachment) error {
	pod, err := openNetNS(args.Netns)
	if err != nil {
		return err
	}
	defer pod.Close()
	h, err := netlinksafe.NewHandleAt(pod)
	if err != nil {
		return fmt.Errorf("netlink handle in pod netns: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(want.podName)
	if err != nil {
		return checkErr("pod interface %s: %v", want.podName, err)
	}
	if got := link.Attrs().HardwareAddr.String(); got != want.podMAC.String() {
		return checkErr("pod interface %s has mac %s, prevResult says %s", want.podName, got, want.podMAC)
	}
	addrs, err := h.Handle.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list pod addresses: %w", err)
	}
	for _, a := range want.addrs {
		found := slices.ContainsFunc(addrs, func(x netlink.Addr) bool { return x.IP.Equal(a.AsSlice()) })
		if !found {
			return checkErr("pod interface %s lacks address %s", want.podName, a)
		}
	}
	for _, dst := range want.routes {
		if !hasFamily(want.addrs, dst.Addr().Is6()) {
			continue
		}
		if err := hasRoute(&h, link, dst, gateway(dst.Addr())); err != nil {
			return err
		}
	}
	return nil
}

// hasRoute checks that a route to dst (via gw, when valid) leaves link.
func hasRoute(h *netlinksafe.Handle, link netlink.Link, dst netip.Prefix, gw netip.Addr) error {
	fam := netlink.FAMILY_V4
	if dst.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	var routes []netlink.Route
	var err error
	if h != nil {
		routes, err = h.RouteList(link, fam)
	} else {
		routes, err = netlinksafe.RouteList(link, fam)
	}
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if !routeDst(r).IsValid() || routeDst(r) != dst {
			continue
		}
		if !gw.IsValid() || r.Gw.Equal(gw.AsSlice()) {
			return nil
		}
	}
	return checkErr("no route to %s on %s", dst, link.Attrs().Name)
}

func routeDst(r netlink.Route) netip.Prefix {
	if r.Dst == nil {
		if r.Family == netlink.FAMILY_V6 {
			return netip.MustParsePrefix("::/0")
		}
		return netip.MustParsePrefix("0.0.0.0/0")
	}
	a, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}
