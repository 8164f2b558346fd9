package controller

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DNSRoute installs, in the agent's network namespace, the policy route
// the DNS proxy's tproxy rules need: packets carrying Mark are delivered
// locally (`ip rule fwmark Mark/Mark lookup Table` and `local 0.0.0.0/0`,
// `local ::/0` in Table). It is idempotent; IPv6 is skipped on a kernel
// without it.
func DNSRoute(mark uint32, table int) error {
	for _, fam := range []struct {
		family int
		dst    string
	}{{netlink.FAMILY_V4, "0.0.0.0/0"}, {netlink.FAMILY_V6, "::/0"}} {
		if err := dnsRoute(fam.family, fam.dst, mark, table); err != nil {
			if fam.family == netlink.FAMILY_V6 && errors.Is(err, unix.EAFNOSUPPORT) {
				continue
			}
			return err
		}
	}
	return nil
}

func dnsRoute(family int, dst string, mark uint32, table int) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("dns route: %w", err)
	}
	_, all, _ := net.ParseCIDR(dst)
	route := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: all, Table: table, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("dns route local %s table %d: %w", dst, table, err)
	}
	rules, err := netlink.RuleList(family)
	if err != nil {
		return fmt.Errorf("dns route: list rules: %w", err)
	}
	for _, r := range rules {
		if r.Mark == mark && r.Mask != nil && *r.Mask == mark && r.Table == table {
			return nil
		}
	}
	rule := netlink.NewRule()
	rule.Family, rule.Mark, rule.Table = family, mark, table
	m := mark
	rule.Mask = &m
	if err := netlink.RuleAdd(rule); err != nil {
		return fmt.Errorf("dns route: ip rule fwmark %#x lookup %d: %w", mark, table, err)
	}
	return nil
}
