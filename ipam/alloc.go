package ipam

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"

	"github.com/weir-cni/weir/conf"
)

// decision is what plan decides for one Allocate call.
type decision struct {
	allocs []Allocation          // every address the attachment ends up with
	fresh  []Allocation          // the subset to claim now
	cursor map[string]netip.Addr // new "last reserved" per range key
}

// rangeKey names a range in the "last reserved" record.
func rangeKey(r conf.Range) string { return r.Start.String() + "-" + r.End.String() }

// plan chooses one address per family present in ranges for a, given the
// current reservations and the last address dynamically reserved in each
// range. It is pure.
func plan(a Attachment, ranges []conf.Range, requested []netip.Addr,
	held map[netip.Addr]Attachment, last map[string]netip.Addr) (decision, error) {
	d := decision{cursor: map[string]netip.Addr{}}
	for _, v6 := range families(ranges) {
		fam := make([]conf.Range, 0, len(ranges))
		for _, r := range ranges {
			if r.Is6() == v6 {
				fam = append(fam, r)
			}
		}
		if al, ok := holding(a, fam, held); ok {
			d.allocs = append(d.allocs, al)
			continue
		}
		var al Allocation
		var err error
		if req, ok := requestedOf(requested, v6); ok {
			al, err = pick(req, fam, held)
		} else if al, err = next(fam, held, last); err == nil {
			d.cursor[rangeKey(al.Range)] = al.Addr
		}
		if err != nil {
			return decision{}, err
		}
		al.Fresh = true
		d.allocs = append(d.allocs, al)
		d.fresh = append(d.fresh, al)
	}
	return d, nil
}

// families lists the address families of ranges in order of first
// appearance (false = IPv4, true = IPv6).
func families(ranges []conf.Range) []bool {
	var out []bool
	for _, r := range ranges {
		if len(out) == 0 || (len(out) == 1 && out[0] != r.Is6()) {
			out = append(out, r.Is6())
		}
	}
	return out
}

// holding returns the lowest address a already holds inside fam.
func holding(a Attachment, fam []conf.Range, held map[netip.Addr]Attachment) (Allocation, bool) {
	var best Allocation
	for ip, h := range held {
		if h != a || (best.Addr.IsValid() && ip.Compare(best.Addr) > 0) {
			continue
		}
		if r, ok := within(ip, fam); ok {
			best = Allocation{Addr: ip, Range: r}
		}
	}
	return best, best.Addr.IsValid()
}

func requestedOf(requested []netip.Addr, v6 bool) (netip.Addr, bool) {
	for _, ip := range requested {
		if ip.Is6() == v6 {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

func within(ip netip.Addr, fam []conf.Range) (conf.Range, bool) {
	for _, r := range fam {
		if r.Contains(ip) {
			return r, true
		}
	}
	return conf.Range{}, false
}

// pick reserves the requested address ip if it is free.
func pick(ip netip.Addr, fam []conf.Range, held map[netip.Addr]Attachment) (Allocation, error) {
	r, ok := within(ip, fam)
	if !ok {
		return Allocation{}, fmt.Errorf("requested address %s is not inside any range", ip)
	}
	if h, taken := held[ip]; taken {
		return Allocation{}, fmt.Errorf("%s (held by %s): %w", ip, h, ErrUnavailable)
	}
	return Allocation{Addr: ip, Range: r}, nil
}

// next finds a free address in the first range of fam with room, going
// round-robin from the address after the range's last reservation so that a
// freed address is not handed out again at once. It looks at no more than
// (reservations inside the range + 1) candidates per range, so huge IPv6
// ranges cost no more than small ones.
func next(fam []conf.Range, held map[netip.Addr]Attachment, last map[string]netip.Addr) (Allocation, error) {
	for _, r := range fam {
		taken := 0
		for ip := range held {
			if r.Contains(ip) {
				taken++
			}
		}
		c := r.Start
		if l, ok := last[rangeKey(r)]; ok && r.Contains(l) {
			c = step(r, l)
		}
		for range taken + 1 {
			if _, ok := held[c]; !ok {
				return Allocation{Addr: c, Range: r}, nil
			}
			c = step(r, c)
		}
	}
	v := "IPv4"
	if fam[0].Is6() {
		v = "IPv6"
	}
	return Allocation{}, fmt.Errorf("%s ranges %v: %w", v, fam, ErrExhausted)
}

// step returns the address after ip in r, wrapping from End to Start.
func step(r conf.Range, ip netip.Addr) netip.Addr {
	n := ip.Next()
	if !n.IsValid() || !r.Contains(n) {
		return r.Start
	}
	return n
}

// free counts the addresses not held in the ranges of each family,
// saturating at math.MaxUint64.
func free(ranges []conf.Range, held map[netip.Addr]Attachment) (v4, v6 uint64) {
	for _, r := range ranges {
		n, exact := size(r)
		if exact {
			for ip := range held {
				if r.Contains(ip) {
					n--
				}
			}
		}
		if r.Is6() {
			v6 = addSat(v6, n)
		} else {
			v4 = addSat(v4, n)
		}
	}
	return v4, v6
}

// size is the number of addresses in r; when it does not fit in a uint64
// it is math.MaxUint64 and exact is false.
func size(r conf.Range) (n uint64, exact bool) {
	s, e := r.Start.As16(), r.End.As16()
	shi, slo := binary.BigEndian.Uint64(s[:8]), binary.BigEndian.Uint64(s[8:])
	ehi, elo := binary.BigEndian.Uint64(e[:8]), binary.BigEndian.Uint64(e[8:])
	lo := elo - slo
	hi := ehi - shi
	if elo < slo {
		hi--
	}
	if hi != 0 || lo == math.MaxUint64 {
		return math.MaxUint64, false
	}
	return lo + 1, true
}

func addSat(a, b uint64) uint64 {
	if a+b < a {
		return math.MaxUint64
	}
	return a + b
}
