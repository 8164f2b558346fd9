package testkit

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// HostAliasPrefix starts the alias weir gives every host-side veth.
const HostAliasPrefix = "weir:"

// WeirLinks returns the names of the links in netns whose alias marks them
// as weir host veths, sorted.
func WeirLinks(netns ns.NetNS) ([]string, error) {
	var names []string
	err := netns.Do(func(ns.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Alias, HostAliasPrefix) {
				names = append(names, l.Attrs().Name)
			}
		}
		return nil
	})
	sort.Strings(names)
	return names, err
}

// Links returns "name type alias" for every link in netns, sorted, to
// compare a namespace before and after an operation.
func Links(netns ns.NetNS) ([]string, error) {
	var out []string
	err := netns.Do(func(ns.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		for _, l := range links {
			a := l.Attrs()
			out = append(out, fmt.Sprintf("%s %s %s", a.Name, l.Type(), a.Alias))
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// Allocated returns the addresses the IPAM store in dir (dataDir/<network
// name>) holds: every file whose name is an IP address. A missing
// directory holds none.
func Allocated(dir string) ([]netip.Addr, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ipam store %s: %w", dir, err)
	}
	var out []netip.Addr
	for _, e := range ents {
		if a, err := netip.ParseAddr(e.Name()); err == nil && !e.IsDir() {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out, nil
}

// Store returns the IPAM store directory of network name under dataDir.
func Store(dataDir, name string) string { return filepath.Join(dataDir, name) }

// LinkAddrs returns the global addresses on link name in netns, sorted.
func LinkAddrs(netns ns.NetNS, name string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	err := netns.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find link %s: %w", name, err)
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("list addresses of %s: %w", name, err)
		}
		for _, a := range addrs {
			p, ok := netip.AddrFromSlice(a.IP)
			if !ok || p.IsLinkLocalUnicast() {
				continue
			}
			ones, _ := a.Mask.Size()
			out = append(out, netip.PrefixFrom(p.Unmap(), ones))
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Addr().Less(out[j].Addr()) })
	return out, err
}
