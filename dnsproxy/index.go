package dnsproxy

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weir-cni/weir/ruleset"
)

// Learned is one pair the proxy put in a rule's set: which lookup of the
// pod let the address in, and until when.
type Learned struct {
	Owner ruleset.Owner // the rule
	Set   string        // the rule's set holding the pair
	// Name is the name the pod asked; Answer the owner name of the
	// address records, at the end of the CNAME chain from Name (Name
	// itself when there is none). Both lower case, no trailing dot.
	Name, Answer string
	Addr         netip.Addr
	// At is when the answer was learned (the pair's last refresh),
	// Expires when its timeout runs out.
	At, Expires time.Time
}

// pair is an index key: one element of one set.
type pair struct {
	set       string
	pod, addr netip.Addr
}

// index is what the proxy learned and has not seen expire or forgotten.
// Its entries mirror the sets' elements: a refresh replaces the entry.
type index struct {
	mu sync.Mutex
	m  map[pair]Learned
}

func (x *index) put(pod netip.Addr, l Learned) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.m == nil {
		x.m = map[pair]Learned{}
	}
	x.m[pair{l.Set, pod, l.Addr}] = l
}

// explain returns the entries of pod . addr that have not expired at now,
// by set.
func (x *index) explain(pod, addr netip.Addr, now time.Time) []Learned {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []Learned
	for k, l := range x.m {
		if k.pod == pod && k.addr == addr && now.Before(l.Expires) {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b Learned) int { return strings.Compare(a.Set, b.Set) })
	return out
}

// expire removes the entries expired at now and returns how many.
func (x *index) expire(now time.Time) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for k, l := range x.m {
		if !now.Before(l.Expires) {
			delete(x.m, k)
			n++
		}
	}
	return n
}

// stale sorts out the entries rules no longer back: it removes those of
// sets no rule has (the applier deleted the set, elements and all) and
// returns, per set and pod, the addresses of pods their set's rule no
// longer selects, which the caller must forget.
func (x *index) stale(t rules) map[pair][]netip.Addr {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := map[pair][]netip.Addr{}
	for k := range x.m {
		exists, selected := t.holds(k.set, k.pod)
		switch {
		case !exists:
			delete(x.m, k)
		case !selected:
			sp := pair{set: k.set, pod: k.pod}
			out[sp] = append(out[sp], k.addr)
		}
	}
	return out
}

// drop removes the entries of set and pod for addrs.
func (x *index) drop(set string, pod netip.Addr, addrs []netip.Addr) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, a := range addrs {
		delete(x.m, pair{set, pod, a})
	}
}
