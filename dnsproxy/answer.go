package dnsproxy

import (
	"math"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// maxChain bounds the CNAME records followed from the question name.
const maxChain = 16

// found is one address an answer gave for a name, with the time it may be
// used: the lowest TTL of its record and of the CNAME records leading to it.
type found struct {
	addr netip.Addr
	ttl  uint32
}

// addresses follows the CNAME chain from qname through the answer records
// and returns the name at its end (canonical) and that name's A and AAAA
// addresses, each once. A chain that loops or is longer than maxChain
// gives no address.
func addresses(answer []dns.RR, qname string) (string, []found) {
	name, chainTTL := dns.CanonicalName(qname), uint32(math.MaxUint32)
	seen := map[string]bool{name: true}
	for hops := 0; ; hops++ {
		target, ttl, ok := cname(answer, name)
		if !ok {
			return name, records(answer, name, chainTTL)
		}
		if seen[target] || hops == maxChain {
			return target, nil
		}
		seen[target] = true
		name, chainTTL = target, min(chainTTL, ttl)
	}
}

// cname returns the canonical target and TTL of name's CNAME record.
func cname(answer []dns.RR, name string) (string, uint32, bool) {
	for _, rr := range answer {
		if c, ok := rr.(*dns.CNAME); ok && inClass(rr) && dns.CanonicalName(rr.Header().Name) == name {
			return dns.CanonicalName(c.Target), rr.Header().Ttl, true
		}
	}
	return "", 0, false
}

// records returns the A and AAAA addresses of name, each once, with TTLs
// no higher than capTTL.
func records(answer []dns.RR, name string, capTTL uint32) []found {
	var out []found
	seen := map[netip.Addr]bool{}
	for _, rr := range answer {
		if !inClass(rr) || dns.CanonicalName(rr.Header().Name) != name {
			continue
		}
		var ip []byte
		switch r := rr.(type) {
		case *dns.A:
			ip = r.A.To4()
		case *dns.AAAA:
			ip = r.AAAA.To16()
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok || seen[addr] {
			continue
		}
		seen[addr] = true
		out = append(out, found{addr: addr, ttl: min(capTTL, rr.Header().Ttl)})
	}
	return out
}

func inClass(rr dns.RR) bool { return rr.Header().Class == dns.ClassINET }

// clampTTL is ttl seconds, at least lo and at most hi.
func clampTTL(ttl uint32, lo, hi time.Duration) time.Duration {
	return min(max(time.Duration(ttl)*time.Second, lo), hi)
}

// bare is a canonical name as people write it: no trailing dot.
func bare(name string) string {
	if name == "." {
		return name
	}
	return name[:len(name)-1]
}
