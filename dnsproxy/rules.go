package dnsproxy

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/weir-cni/weir/ruleset"
)

// Rule is one ClusterNetworkPolicy egress rule with domainNames peers, as
// the proxy needs it (the fields of ruleset.DNSRule): the proxy fills Set4
// and Set6 with pod . address pairs from the answers to the lookups its
// Pods make of Names.
type Rule struct {
	Owner      ruleset.Owner
	Set4, Set6 string
	// Names are exact names and "*."-wildcards ("api.example.com",
	// "*.cdn.example.com"); case and a trailing dot do not matter.
	Names []string
	// Pods are the local pods the rule's subject selects, both families.
	Pods []netip.Addr
}

// Learner writes learned pairs into the kernel's sets (the nftables
// backend implements it over netlink). The proxy calls it from many
// goroutines at once.
type Learner interface {
	// Learn adds the pair pod . addr to set, or refreshes it, with timeout
	// ttl. When the set holds its size it returns an error wrapping
	// ErrSetFull (or the kernel's ENOSPC or ENFILE).
	Learn(set string, pod, addr netip.Addr, ttl time.Duration) error
	// Forget deletes the pairs pod . a, for each a of addrs, from set; a
	// pair already gone (expired) is no error.
	Forget(set string, pod netip.Addr, addrs []netip.Addr) error
}

// ErrSetFull is what a Learner's error wraps when the set holds its size:
// the address stays denied.
var ErrSetFull = errors.New("learned-address set is full")

// setFull says whether a Learn error means the set is full.
func setFull(err error) bool {
	return errors.Is(err, ErrSetFull) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.ENFILE)
}

// pattern is one entry of a rule's Names: an exact name, or under a
// wildcard the suffix its matches end with. name is canonical (lower case,
// fully qualified).
type pattern struct {
	name     string
	wildcard bool
}

func parsePattern(s string) pattern {
	if suffix, ok := strings.CutPrefix(s, "*."); ok {
		return pattern{name: dns.CanonicalName(suffix), wildcard: true}
	}
	return pattern{name: dns.CanonicalName(s)}
}

// matches says whether the pattern allows the name qname (canonical), as
// the API defines it: an exact name matches itself; "*.suffix" matches
// the names of one or more whole labels under suffix, not suffix itself.
// Labels compare as DNS labels (an escaped dot is inside a label).
func (p pattern) matches(qname string) bool {
	if !p.wildcard {
		return qname == p.name
	}
	n := dns.CountLabel(p.name)
	return dns.CountLabel(qname) > n && dns.CompareDomainName(qname, p.name) == n
}

// rule is a Rule ready for queries: its patterns parsed, its pods a set.
type rule struct {
	Rule
	patterns []pattern
	pods     map[netip.Addr]bool
}

func newRule(r Rule) *rule {
	c := &rule{Rule: r, pods: make(map[netip.Addr]bool, len(r.Pods))}
	for _, n := range r.Names {
		c.patterns = append(c.patterns, parsePattern(n))
	}
	for _, p := range r.Pods {
		c.pods[p.Unmap()] = true
	}
	return c
}

// allows says whether one of the rule's names matches qname (canonical).
func (r *rule) allows(qname string) bool {
	for _, p := range r.patterns {
		if p.matches(qname) {
			return true
		}
	}
	return false
}

// set is the rule's set for pairs of a pod of addr's family.
func (r *rule) set(addr netip.Addr) string {
	if addr.Is4() {
		return r.Set4
	}
	return r.Set6
}

// rules is the proxy's view of the ruleset's DNS rules.
type rules struct {
	byPod map[netip.Addr][]*rule
	bySet map[string]*rule
}

func newRules(rs []Rule) rules {
	t := rules{byPod: map[netip.Addr][]*rule{}, bySet: map[string]*rule{}}
	for _, r := range rs {
		c := newRule(r)
		for p := range c.pods {
			t.byPod[p] = append(t.byPod[p], c)
		}
		for _, s := range []string{r.Set4, r.Set6} {
			if s != "" {
				t.bySet[s] = c
			}
		}
	}
	return t
}

// holds says whether set belongs to a rule that still selects pod: the
// first result says the set exists at all.
func (t rules) holds(set string, pod netip.Addr) (exists, selected bool) {
	r, ok := t.bySet[set]
	return ok, ok && r.pods[pod]
}
