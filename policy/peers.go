package policy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/weir-cni/weir/ruleset"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// interval is a closed range of addresses of one family.
type interval struct{ lo, hi netip.Addr }

// peers is what the `from` / `to` list of one rule resolves to.
type peers struct {
	// selectors are the pod/namespace selector peers, one per distinct
	// definition, sorted by it.
	selectors []selectorPeer
	// v4 and v6 are the ipBlocks' addresses, disjoint and sorted.
	v4, v6 []interval
}

// selectorPeer is one selector peer: the cached results holding the pods
// it matches, and its definition, which equal selectors of any policy
// share.
type selectorPeer struct {
	def     string
	entries []*podEntry
}

// pods returns the distinct pods of entries. It is called only for a group
// not yet computed in this Compile: listing the pods costs O(members of
// entries), a memo hit nothing. With one entry the pods are distinct
// already; with more, a pod matched by many selectors is listed once, so
// memory stays O(distinct pods) however many selectors overlap.
func pods(entries []*podEntry) []*podRec {
	if len(entries) == 1 {
		return entries[0].list // read only
	}
	seen := map[*podRec]struct{}{}
	var out []*podRec
	for _, e := range entries {
		for _, p := range e.list {
			if _, dup := seen[p]; !dup {
				seen[p] = struct{}{}
				out = append(out, p)
			}
		}
	}
	return out
}

// pods returns the pods any selector peer matches; as for pods(entries),
// only a group not yet computed calls it.
func (ps peers) pods() []*podRec { return pods(ps.entries()) }

// entries returns the distinct cached results of the selector peers, in
// order.
func (ps peers) entries() []*podEntry {
	var entries []*podEntry
	seen := map[*podEntry]bool{} // equal namespaces of two selectors share an entry
	for _, sp := range ps.selectors {
		for _, e := range sp.entries {
			if !seen[e] {
				seen[e] = true
				entries = append(entries, e)
			}
		}
	}
	return entries
}

// podBound is at least the number of pods the selector peers match (the
// pods of each distinct cached result counted, a pod of two results
// twice), without listing them. It counts as refreshPeers does: a result
// two selectors share counts once.
func (ps peers) podBound() int { return membersBound(ps.entries()) }

// membersBound is the number of members of entries, each entry counted
// once per place in the list.
func membersBound(entries []*podEntry) int {
	n := 0
	for _, e := range entries {
		n += len(e.members)
	}
	return n
}

// podsDef is the definition of the selector peers together, "" when there
// are none: equal definitions match equal pods.
func (ps peers) podsDef() string {
	if len(ps.selectors) == 0 {
		return ""
	}
	defs := make([]string, 0, len(ps.selectors))
	for _, sp := range ps.selectors {
		defs = append(defs, sp.def)
	}
	return defKey("pods", defs...)
}

// unionDef is the definition of the group of the selector peers' union:
// a single selector's own (so a rule of one selector shares its group
// with every other rule of that selector), else podsDef.
func (ps peers) unionDef() string {
	if len(ps.selectors) == 1 {
		return ps.selectors[0].def
	}
	return ps.podsDef()
}

// resolvePeers resolves a rule's peers against the snapshot, following the
// API:
//   - podSelector alone selects pods in the policy's namespace;
//   - namespaceSelector alone selects every pod of the matching namespaces;
//   - both select the matching pods of the matching namespaces;
//   - `{}` selectors match everything;
//   - ipBlock matches cidr minus every except, pod IPs included.
//
// Any invalid peer makes the whole rule invalid: the caller then lets the
// rule allow nothing, so a policy is never half-applied.
func (c *policyBuilder) resolvePeers(ns string, list []networkingv1.NetworkPolicyPeer) (peers, []string, error) {
	var (
		out   peers
		ivs   []interval
		notes []string
	)
	for i, peer := range list {
		switch {
		case peer.IPBlock != nil:
			if peer.PodSelector != nil || peer.NamespaceSelector != nil {
				return peers{}, nil, fmt.Errorf("peer %d: ipBlock cannot be combined with selectors", i)
			}
			block, n, err := ipBlockIntervals(peer.IPBlock)
			if err != nil {
				return peers{}, nil, fmt.Errorf("peer %d: %w", i, err)
			}
			notes = append(notes, n...)
			ivs = append(ivs, block...)
		case peer.PodSelector != nil || peer.NamespaceSelector != nil:
			entries, def, err := c.selectPeerPods(ns, peer)
			if err != nil {
				return peers{}, nil, fmt.Errorf("peer %d: %w", i, err)
			}
			out.selectors = append(out.selectors, selectorPeer{def: def, entries: entries})
		default:
			return peers{}, nil, fmt.Errorf("peer %d: empty peer (needs podSelector, namespaceSelector or ipBlock)", i)
		}
	}
	if len(out.selectors) > 0 {
		slices.SortFunc(out.selectors, func(a, b selectorPeer) int { return strings.Compare(a.def, b.def) })
		out.selectors = slices.CompactFunc(out.selectors, func(a, b selectorPeer) bool { return a.def == b.def })
	}
	merged := unionIntervals(ivs)
	v6 := slices.IndexFunc(merged, func(iv interval) bool { return !iv.lo.Is4() })
	if v6 < 0 {
		v6 = len(merged)
	}
	out.v4, out.v6 = merged[:v6], merged[v6:]
	return out, notes, nil
}

// peerElems returns the elements of a group of selector peers in shared
// set set (peers4 or peers6), prefixed by its id id: the addresses of the
// family of set of the pods of from. A pod two results hold is listed
// twice, its addresses once (entriesAddrs drops repeats): no map of the pods
// seen, and the addresses listed are at most what the policy's element
// cap was charged (membersBound).
func peerElems(id uint32, set string, from []*podEntry) []ruleset.Elem {
	return relistedElems(id, set, from, nil)
}

// relistedElems is peerElems taking the elements of old, the group's
// elements listed before (sorted), where they have the keys it lists:
// a group listed again after a pod joined or left gets new keys for the
// addresses that came only.
func relistedElems(id uint32, set string, from []*podEntry, old []ruleset.Elem) []ruleset.Elem {
	all, width := entriesAddrs(set == setPeers4, from)
	idr := ruleset.IDBytes(id)
	n := len(all) / width
	out := make([]ruleset.Elem, n)
	var keys []ruleset.Range
	for i := range n {
		a := all[i*width : (i+1)*width]
		for len(old) > 0 && old[0].Key[1].From < a {
			old = old[1:]
		}
		if len(old) > 0 && old[0].Key[1].From == a && old[0].Key[0].From == idr {
			out[i] = old[0]
			continue
		}
		if keys == nil {
			keys = make([]ruleset.Range, 0, 2*(n-i)) // one allocation for every new key
		}
		k := len(keys)
		keys = append(keys, ruleset.Range{From: idr, To: idr}, ruleset.Range{From: a, To: a})
		out[i] = ruleset.Elem{Key: keys[k : k+2 : k+2]}
	}
	return out
}

// podElems returns the addresses of pods of family v4 (or v6) as sorted,
// distinct single-address elements.
func podElems(pods []*podRec, v4 bool) []ruleset.Elem {
	all, width := podAddrs(v4, pods)
	n := len(all) / width
	out := make([]ruleset.Elem, n)
	keys := make([]ruleset.Range, n) // one allocation for every key
	for i := range n {
		a := all[i*width : (i+1)*width]
		keys[i] = ruleset.Range{From: a, To: a}
		out[i] = ruleset.Elem{Key: keys[i : i+1 : i+1]}
	}
	return out
}

// podAddrs returns the addresses of family v4 (or v6) of the pods of
// lists, sorted and distinct, one after the other in one string, and their
// width in bytes. IPv4 addresses sort as integers.
func podAddrs(v4 bool, lists ...[]*podRec) (string, int) {
	n := 0
	for _, pods := range lists {
		n += len(pods)
	}
	if !v4 {
		addrs := make([]netip.Addr, 0, n)
		for _, pods := range lists {
			for _, p := range pods {
				for _, ip := range p.IPs {
					if ip = ip.Unmap(); !ip.Is4() {
						addrs = append(addrs, ip)
					}
				}
			}
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		addrs = slices.Compact(addrs)
		buf := make([]byte, 0, 16*len(addrs))
		for _, a := range addrs {
			buf = appendAddr(buf, a)
		}
		return string(buf), 16
	}
	addrs := make([]uint32, 0, n)
	for _, pods := range lists {
		for _, p := range pods {
			for _, ip := range p.IPs {
				if ip = ip.Unmap(); ip.Is4() {
					a := ip.As4()
					addrs = append(addrs, binary.BigEndian.Uint32(a[:]))
				}
			}
		}
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	buf := make([]byte, 0, 4*len(addrs))
	for _, a := range addrs {
		buf = binary.BigEndian.AppendUint32(buf, a)
	}
	return string(buf), 4
}

// selectPeerPods returns the cached pods a selector peer matches (none
// when the policy is dry) and the peer's definition: equal definitions
// match equal pods.
func (c *policyBuilder) selectPeerPods(ns string, peer networkingv1.NetworkPolicyPeer) ([]*podEntry, string, error) {
	podKey, podSel := "", labels.Everything()
	if peer.PodSelector != nil {
		k, s, err := c.selector(peer.PodSelector)
		if err != nil {
			return nil, "", fmt.Errorf("podSelector: %w", err)
		}
		podKey, podSel = k, s
	}
	var (
		nsKey string
		nsSel labels.Selector
	)
	if peer.NamespaceSelector != nil {
		k, s, err := c.selector(peer.NamespaceSelector)
		if err != nil {
			return nil, "", fmt.Errorf("namespaceSelector: %w", err)
		}
		nsKey, nsSel = k, s
	}
	def := defKey("ns", ns, podKey) // the policy's own namespace
	if nsSel != nil {
		def = defKey("nssel", nsKey, podKey)
	}
	if c.dry {
		return nil, def, nil
	}
	namespaces := []string{ns}
	if nsSel != nil {
		namespaces = c.nsEntry(nsKey, nsSel).members
	}
	out := make([]*podEntry, 0, len(namespaces))
	for _, ns := range namespaces {
		out = append(out, c.podEntry(ns, podKey, podSel, false))
	}
	return out, def, nil
}

var errBadCIDR = errors.New("invalid CIDR")

// ipBlockIntervals returns cidr minus every except as disjoint intervals.
// An except outside the cidr (the API rejects it) subtracts only its overlap
// and is reported in notes.
func ipBlockIntervals(b *networkingv1.IPBlock) ([]interval, []string, error) {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return nil, nil, fmt.Errorf("ipBlock cidr %q: %w", b.CIDR, errBadCIDR)
	}
	cidr = unmapPrefix(cidr)
	if !cidr.IsValid() {
		return nil, nil, fmt.Errorf("ipBlock cidr %q: %w", b.CIDR, errBadCIDR)
	}
	ivs := []interval{prefixInterval(cidr)}
	var notes []string
	for _, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, nil, fmt.Errorf("ipBlock except %q: %w", e, errBadCIDR)
		}
		ex = unmapPrefix(ex)
		if !ex.IsValid() {
			return nil, nil, fmt.Errorf("ipBlock except %q: %w", e, errBadCIDR)
		}
		if ex.Addr().Is4() != cidr.Addr().Is4() || !cidr.Contains(ex.Addr()) || ex.Bits() < cidr.Bits() {
			notes = append(notes, fmt.Sprintf("ipBlock except %s is not inside cidr %s", ex, cidr))
		}
		ivs = subtract(ivs, prefixInterval(ex))
	}
	return ivs, notes, nil
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) into
// its IPv4 form and masks host bits; the result is invalid if p was.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() {
		bits -= 96
	}
	return netip.PrefixFrom(a.Unmap(), bits).Masked()
}

func prefixInterval(p netip.Prefix) interval {
	return interval{p.Masked().Addr(), ruleset.LastAddr(p)}
}

func prefixIntervals(ps []netip.Prefix) []interval {
	out := make([]interval, 0, len(ps))
	for _, p := range ps {
		out = append(out, prefixInterval(p))
	}
	return out
}

// subtract removes x from every interval of ivs.
func subtract(ivs []interval, x interval) []interval {
	var out []interval
	for _, iv := range ivs {
		if iv.lo.Is4() != x.lo.Is4() || x.hi.Less(iv.lo) || iv.hi.Less(x.lo) {
			out = append(out, iv)
			continue
		}
		if iv.lo.Less(x.lo) {
			out = append(out, interval{iv.lo, x.lo.Prev()})
		}
		if x.hi.Less(iv.hi) {
			out = append(out, interval{x.hi.Next(), iv.hi})
		}
	}
	return out
}

// unionIntervals sorts intervals (IPv4 first) and merges the overlapping
// ones, in place. Adjacent
// intervals stay apart: the kernel accepts them, and a pod's /32 stays one
// element of its own, so pod churn touches one element.
func unionIntervals(ivs []interval) []interval {
	slices.SortFunc(ivs, func(a, b interval) int {
		if c := a.lo.Compare(b.lo); c != 0 {
			return c
		}
		return a.hi.Compare(b.hi)
	})
	out := ivs[:0] // in place: out never passes the interval being read
	for _, iv := range ivs {
		n := len(out)
		if n > 0 && out[n-1].lo.Is4() == iv.lo.Is4() && !out[n-1].hi.Less(iv.lo) {
			if out[n-1].hi.Less(iv.hi) {
				out[n-1].hi = iv.hi
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

func intervalElems(ivs []interval) []ruleset.Elem {
	out := make([]ruleset.Elem, len(ivs))
	keys := make([]ruleset.Range, len(ivs)) // one allocation for every key
	for i, iv := range ivs {
		keys[i] = ruleset.Range{From: addrBytes(iv.lo), To: addrBytes(iv.hi)}
		if iv.hi == iv.lo {
			keys[i].To = keys[i].From
		}
		out[i] = ruleset.Elem{Key: keys[i : i+1 : i+1]}
	}
	return out
}

func single(a netip.Addr) ruleset.Range {
	s := addrBytes(a)
	return ruleset.Range{From: s, To: s}
}

// addrBytes is a.AsSlice() as a string, with one allocation.
func addrBytes(a netip.Addr) string {
	var b [16]byte
	return string(appendAddr(b[:0], a))
}

// appendAddr appends a.AsSlice() to b.
func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case !a.IsValid():
		return b
	case a.Is4():
		x := a.As4()
		return append(b, x[:]...)
	}
	x := a.As16()
	return append(b, x[:]...)
}
