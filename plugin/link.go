package plugin

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/conf"
)

// randomMAC returns a locally administered unicast address for a pod.
func randomMAC() (net.HardwareAddr, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random mac: %w", err)
	}
	b[0] = (b[0] | 0x02) &^ 0x01
	return net.HardwareAddr(b), nil
}

// createVeth makes the pair in one netlink call: the host end here, the pod
// end created directly inside the pod namespace under its final name. The
// host end stays down: no packet can cross it until configureHost. It is
// born in the link group of the pod's namespace (at.group), which the
// agent's ruleset reads to deny an unclassified pod what its namespace's
// policies deny (nsgroup).
func createVeth(at *attachment, alias string, mtu int, pod netns.NsHandle, v6 bool) (netlink.Link, error) {
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:         at.hostName,
			MTU:          mtu,
			HardwareAddr: hostMAC,
			Group:        at.group, // IFLA_GROUP, sent when not 0
		},
		PeerName:         at.podName,
		PeerHardwareAddr: at.podMAC,
		PeerNamespace:    netlink.NsFd(int(pod)),
		PeerMTU:          uint32(mtu),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s/%s: %w", at.hostName, at.podName, err)
	}
	// The kernel ignores IFLA_IFALIAS when it creates a veth: set it after.
	if err := netlink.LinkSetAlias(veth, alias); err != nil {
		return veth, fmt.Errorf("set alias of %s: %w", at.hostName, err)
	}
	if v6 {
		// The host end never needs DAD: it holds no global address and
		// answers for nothing but its own link-local.
		if err := writeSysctl("net/ipv6/conf/"+at.hostName+"/accept_dad", "0"); err != nil {
			return veth, err
		}
	}
	return veth, nil
}

// configurePod sets the pod end up with its addresses, the gateway
// neighbours and routes, through a netlink handle bound to the pod namespace.
func configurePod(h *netlink.Handle, at *attachment) error {
	link, err := h.LinkByName(at.podName)
	if err != nil {
		return fmt.Errorf("find %s in pod: %w", at.podName, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", at.podName, err)
	}
	idx := link.Attrs().Index
	for _, a := range at.addrs {
		p := ipNet(hostPrefix(a))
		addr := &netlink.Addr{IPNet: &p}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("add address %s: %w", a, err)
		}
	}
	for _, v6 := range []bool{false, true} {
		if !hasFamily(at.addrs, v6) {
			continue
		}
		gw := conf.GatewayV4
		if v6 {
			gw = conf.GatewayV6
		}
		if err := ensurePermanentNeigh(h, idx, gw, hostMAC); err != nil {
			return err
		}
		if !v6 {
			gwNet := ipNet(hostPrefix(gw))
			if err := h.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: &gwNet, Scope: netlink.SCOPE_LINK}); err != nil {
				return fmt.Errorf("ensure route to gateway %s: %w", gw, err)
			}
		}
	}
	for _, dst := range at.routes {
		if !hasFamily(at.addrs, dst.Addr().Is6()) {
			continue
		}
		d := ipNet(dst)
		gw := gateway(dst.Addr())
		r := &netlink.Route{LinkIndex: idx, Dst: &d, Gw: gw.AsSlice()}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("ensure route %s via %s: %w", dst, gw, err)
		}
	}
	return nil
}

// configureHost brings the host end up and adds, in the node namespace, a
// host route and a permanent neighbour for each pod address, so the node
// never has to resolve pods.
func configureHost(host netlink.Link, at *attachment) error {
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("set %s up: %w", at.hostName, err)
	}
	idx := host.Attrs().Index
	for _, a := range at.addrs {
		d := ipNet(hostPrefix(a))
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: &d, Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("ensure host route %s: %w", a, err)
		}
		if err := ensurePermanentNeigh(nil, idx, a, at.podMAC); err != nil {
			return err
		}
	}
	return nil
}

func ensurePermanentNeigh(h *netlink.Handle, idx int, ip netip.Addr, mac net.HardwareAddr) error {
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	n := &netlink.Neigh{LinkIndex: idx, Family: fam, State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: mac}
	var err error
	if h != nil {
		err = h.NeighSet(n)
	} else {
		err = netlink.NeighSet(n)
	}
	if err != nil {
		return fmt.Errorf("ensure neighbour %s: %w", ip, err)
	}
	return nil
}

// ensureForwarding turns on forwarding in the node namespace for the
// families in use; it writes only when the value differs.
func ensureForwarding(v4, v6 bool) error {
	if v4 {
		if err := ensureSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
	}
	if v6 {
		if err := ensureSysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
	}
	return nil
}

func ensureSysctl(key, val string) error {
	cur, err := os.ReadFile("/proc/sys/" + key)
	if err == nil && len(cur) > 0 && string(cur[:len(cur)-1]) == val {
		return nil
	}
	return writeSysctl(key, val)
}

func writeSysctl(key, val string) error {
	if err := os.WriteFile("/proc/sys/"+key, []byte(val), 0o644); err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", key, val, err)
	}
	return nil
}

// deleteLink removes a link by name; a missing link is success (found
// false).
func deleteLink(h *netlink.Handle, name string) (found bool, err error) {
	var link netlink.Link
	if h != nil {
		link, err = h.LinkByName(name)
	} else {
		link, err = netlink.LinkByName(name)
	}
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, nil
		}
		return false, fmt.Errorf("find link %s: %w", name, err)
	}
	if h != nil {
		err = h.LinkDel(link)
	} else {
		err = netlink.LinkDel(link)
	}
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return true, fmt.Errorf("delete link %s: %w", name, err)
	}
	return true, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}
