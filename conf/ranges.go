package conf

import (
	"fmt"
	"net/netip"
)

// ranges validates the configured ranges: each subnet must be a network
// address with room for at least one pod, start/end must lie inside it,
// and no two ranges may overlap.
func ranges(raw []RawRange) ([]Range, []error) {
	var errs []error
	if len(raw) == 0 {
		return nil, []error{invalid("ipam.ranges", "at least one range (IPv4 and/or IPv6 subnet) is required")}
	}
	var out []Range
	for i, rr := range raw {
		field := fmt.Sprintf("ipam.ranges[%d]", i)
		r, err := oneRange(field, rr)
		if err != nil {
			errs = append(errs, err...)
			continue
		}
		for j, o := range out {
			if o.Subnet.Overlaps(r.Subnet) && r.Start.Compare(o.End) <= 0 && o.Start.Compare(r.End) <= 0 {
				errs = append(errs, invalid(field, "%s overlaps ipam.ranges[%d] %s", r, j, o))
			}
		}
		out = append(out, r)
	}
	return out, errs
}

func oneRange(field string, rr RawRange) (Range, []error) {
	var errs []error
	p, err := netip.ParsePrefix(rr.Subnet)
	if err != nil {
		return Range{}, []error{invalid(field+".subnet", "%q is not a CIDR such as 10.244.1.0/24", rr.Subnet)}
	}
	if p.Addr().Is4In6() {
		return Range{}, []error{invalid(field+".subnet", "%q: use a plain IPv4 CIDR, not IPv4-mapped IPv6", rr.Subnet)}
	}
	if p.Masked() != p {
		errs = append(errs, invalid(field+".subnet", "%q has host bits set; did you mean %s?", rr.Subnet, p.Masked()))
		p = p.Masked()
	}
	first, last := hostBounds(p)
	if !first.IsValid() {
		return Range{}, append(errs, invalid(field+".subnet", "%s is too small to hold a pod address", p))
	}
	r := Range{Subnet: p, Start: first, End: last}
	if rr.RangeStart != "" {
		a, err := netip.ParseAddr(rr.RangeStart)
		switch {
		case err != nil:
			errs = append(errs, invalid(field+".rangeStart", "%q is not an IP address", rr.RangeStart))
		case !p.Contains(a) || a.Compare(first) < 0 || a.Compare(last) > 0:
			errs = append(errs, invalid(field+".rangeStart", "%s is not a usable address of %s (%s-%s)", a, p, first, last))
		default:
			r.Start = a
		}
	}
	if rr.RangeEnd != "" {
		a, err := netip.ParseAddr(rr.RangeEnd)
		switch {
		case err != nil:
			errs = append(errs, invalid(field+".rangeEnd", "%q is not an IP address", rr.RangeEnd))
		case !p.Contains(a) || a.Compare(first) < 0 || a.Compare(last) > 0:
			errs = append(errs, invalid(field+".rangeEnd", "%s is not a usable address of %s (%s-%s)", a, p, first, last))
		default:
			r.End = a
		}
	}
	if r.Start.Compare(r.End) > 0 {
		errs = append(errs, invalid(field, "rangeStart %s is after rangeEnd %s", r.Start, r.End))
	}
	return r, errs
}

// hostBounds returns the first and last address a pod may get in p: the
// network address is skipped, and for IPv4 the broadcast address too. /32
// and /128 ranges hold exactly one address.
func hostBounds(p netip.Prefix) (first, last netip.Addr) {
	bits := p.Addr().BitLen()
	if p.Bits() == bits {
		return p.Addr(), p.Addr()
	}
	first = p.Addr().Next()
	last = lastAddr(p)
	if p.Addr().Is4() && p.Bits() < 31 {
		last = last.Prev()
	}
	if p.Addr().Is4() && p.Bits() == 31 {
		first = p.Addr()
	}
	if first.Compare(last) > 0 {
		return netip.Addr{}, netip.Addr{}
	}
	return first, last
}

// lastAddr returns the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - uint(i%8))
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// routes validates the pod routes; with none configured the pod gets a
// default route for each family it has a range of.
func routes(raw []RawRoute, c *NetConf) ([]netip.Prefix, []error) {
	var errs []error
	var out []netip.Prefix
	if len(raw) == 0 {
		if c.HasFamily(false) {
			out = append(out, netip.MustParsePrefix("0.0.0.0/0"))
		}
		if c.HasFamily(true) {
			out = append(out, netip.MustParsePrefix("::/0"))
		}
		return out, nil
	}
	for i, rr := range raw {
		field := fmt.Sprintf("ipam.routes[%d].dst", i)
		p, err := netip.ParsePrefix(rr.Dst)
		if err != nil {
			errs = append(errs, invalid(field, "%q is not a CIDR", rr.Dst))
			continue
		}
		if p.Masked() != p {
			errs = append(errs, invalid(field, "%q has host bits set; did you mean %s?", rr.Dst, p.Masked()))
			continue
		}
		if len(c.Ranges) > 0 && !c.HasFamily(p.Addr().Is6()) {
			errs = append(errs, invalid(field, "%s: no range of that address family is configured", p))
			continue
		}
		out = append(out, p)
	}
	return out, errs
}

// requested validates the addresses asked for through runtimeConfig.ips,
// args.cni.ips or IP= in CNI_ARGS. Entries may carry a prefix length
// ("10.244.1.5/24") as the ips capability convention allows.
func requested(raw []string, rs []Range) ([]netip.Addr, []error) {
	var errs []error
	var out []netip.Addr
	seen := map[bool]bool{}
	for _, s := range raw {
		a, err := netip.ParseAddr(s)
		if err != nil {
			p, perr := netip.ParsePrefix(s)
			if perr != nil {
				errs = append(errs, invalid("ips", "%q is not an IP address", s))
				continue
			}
			a = p.Addr()
		}
		if containsAddr(out, a) {
			continue
		}
		inRange := false
		for _, r := range rs {
			inRange = inRange || r.Contains(a)
		}
		if !inRange {
			errs = append(errs, invalid("ips", "requested address %s is not inside any configured range", a))
			continue
		}
		if seen[a.Is6()] {
			errs = append(errs, invalid("ips", "more than one address requested for the same family (%s)", a))
			continue
		}
		seen[a.Is6()] = true
		out = append(out, a)
	}
	return out, errs
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}
