package policy

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"

	"github.com/weir-cni/weir/ruleset"
)

// memberAddrs are the addresses of the members of a cached result, each
// family sorted, an address two members share listed twice. A result
// lists them once asked (podEntry.addrs), then keeps them up to date as
// pods join, leave or change their addresses: listing the pods of a peer
// group again after one pod changed merges the sorted lists of its
// results instead of sorting every member's address again.
type memberAddrs struct {
	v4 []uint32 // as big-endian integers, which sort as the key bytes
	v6 []netip.Addr
}

// addrs returns the sorted addresses of e's members, listed on first use.
// Policies compiled in parallel may ask at once: one lists them, the
// others wait for its list (see Compiler.compileWholes).
func (e *podEntry) addrs() *memberAddrs {
	e.sortOnce.Do(func() {
		m := &memberAddrs{}
		for _, p := range e.list {
			m.appendAll(p.IPs)
		}
		slices.Sort(m.v4)
		slices.SortFunc(m.v6, netip.Addr.Compare)
		e.sorted = m
	})
	return e.sorted
}

// appendAll appends ips to the lists, unsorted.
func (m *memberAddrs) appendAll(ips []netip.Addr) {
	for _, ip := range ips {
		if v4, ok := ipv4Int(ip); ok {
			m.v4 = append(m.v4, v4)
		} else {
			m.v6 = append(m.v6, ip.Unmap())
		}
	}
}

// insert adds ips, a member's addresses, at their places.
func (m *memberAddrs) insert(ips []netip.Addr) {
	for _, ip := range ips {
		if v4, ok := ipv4Int(ip); ok {
			i, _ := slices.BinarySearch(m.v4, v4)
			m.v4 = slices.Insert(m.v4, i, v4)
		} else {
			ip = ip.Unmap()
			i, _ := slices.BinarySearchFunc(m.v6, ip, netip.Addr.Compare)
			m.v6 = slices.Insert(m.v6, i, ip)
		}
	}
}

// remove takes out ips, a former member's addresses, once each.
func (m *memberAddrs) remove(ips []netip.Addr) {
	for _, ip := range ips {
		if v4, ok := ipv4Int(ip); ok {
			if i, found := slices.BinarySearch(m.v4, v4); found {
				m.v4 = slices.Delete(m.v4, i, i+1)
			}
		} else if i, found := slices.BinarySearchFunc(m.v6, ip.Unmap(), netip.Addr.Compare); found {
			m.v6 = slices.Delete(m.v6, i, i+1)
		}
	}
}

// ipv4Int returns an IPv4 (or IPv4-mapped) address as a big-endian
// integer, and false for an IPv6 address.
func ipv4Int(ip netip.Addr) (uint32, bool) {
	if ip = ip.Unmap(); !ip.Is4() {
		return 0, false
	}
	a := ip.As4()
	return binary.BigEndian.Uint32(a[:]), true
}

// entriesAddrs returns the addresses of family v4 (or v6) of the members
// of entries, sorted and distinct, one after the other in one string, and
// their width in bytes: podAddrs of their pods, from their sorted lists.
func entriesAddrs(v4 bool, entries []*podEntry) (string, int) {
	if !v4 {
		lists := make([][]netip.Addr, len(entries))
		for i, e := range entries {
			lists[i] = e.addrs().v6
		}
		addrs := mergeSorted(lists, netip.Addr.Compare)
		buf := make([]byte, 0, 16*len(addrs))
		for _, a := range addrs {
			buf = appendAddr(buf, a)
		}
		return string(buf), 16
	}
	lists := make([][]uint32, len(entries))
	for i, e := range entries {
		lists[i] = e.addrs().v4
	}
	addrs := mergeSorted(lists, cmp.Compare[uint32])
	buf := make([]byte, 0, 4*len(addrs))
	for _, a := range addrs {
		buf = binary.BigEndian.AppendUint32(buf, a)
	}
	return string(buf), 4
}

// mergeSorted returns the values of sorted lists, sorted and distinct, in
// a new slice: lists merged two by two.
func mergeSorted[T any](lists [][]T, compare func(a, b T) int) []T {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	for len(lists) > 1 {
		next := lists[:0:0]
		for i := 0; i+1 < len(lists); i += 2 {
			next = append(next, mergeTwo(lists[i], lists[i+1], compare))
		}
		if len(lists)%2 == 1 {
			next = append(next, lists[len(lists)-1])
		}
		lists = next
	}
	out := make([]T, 0, n)
	for _, v := range lists[0:min(1, len(lists))] {
		for _, a := range v {
			if len(out) == 0 || compare(out[len(out)-1], a) != 0 {
				out = append(out, a)
			}
		}
	}
	return out
}

// mergeTwo merges two sorted lists into a new one.
func mergeTwo[T any](a, b []T, compare func(a, b T) int) []T {
	out := make([]T, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if compare(b[0], a[0]) < 0 {
			out, b = append(out, b[0]), b[1:]
		} else {
			out, a = append(out, a[0]), a[1:]
		}
	}
	return append(append(out, a...), b...)
}

// has tells whether ip is one of the addresses.
func (m *memberAddrs) has(ip netip.Addr) bool {
	if v4, ok := ipv4Int(ip); ok {
		_, found := slices.BinarySearch(m.v4, v4)
		return found
	}
	_, found := slices.BinarySearchFunc(m.v6, ip.Unmap(), netip.Addr.Compare)
	return found
}

// maxTouched is the most addresses of changed pods patchedElems patches
// a group with; beyond, groups are listed again.
const maxTouched = 64

// touch records the addresses of a pod added, changed or removed.
func (x *Compiler) touch(ips []netip.Addr) {
	if x.touchedOver {
		return
	}
	for _, ip := range ips {
		x.touched = append(x.touched, ip.Unmap())
	}
	if len(x.touched) > maxTouched {
		x.touched, x.touchedOver = x.touched[:0], true
	}
}

// patchedElems returns the elements of a peer group of shared set set,
// of id id, listed from the cached results from, patched from old, its
// elements listed when their versions were listed: only the addresses
// of the pods changed in this Compile (x.touched) can have come or gone,
// each present when a member of from has it. That holds when every
// result of from changed in this Compile only since listed, and the
// changed pods' addresses are known; else it returns false.
func (x *Compiler) patchedElems(id uint32, set string, from []*podEntry, listed []uint64, old []ruleset.Elem) ([]ruleset.Elem, bool) {
	if x.touchedOver || len(listed) != len(from) {
		return nil, false
	}
	for i, e := range from {
		if e.startGen != x.gen && e.ver != listed[i] || e.startGen == x.gen && e.startVer != listed[i] {
			return nil, false
		}
	}
	v4 := set == setPeers4
	var come []string
	gone := map[string]bool{}
	for _, ip := range x.touched {
		if ip.Is4() != v4 {
			continue
		}
		a := addrBytes(ip)
		_, was := slices.BinarySearchFunc(old, a, func(e ruleset.Elem, a string) int { return strings.Compare(e.Key[1].From, a) })
		is := slices.ContainsFunc(from, func(e *podEntry) bool { return e.addrs().has(ip) })
		switch {
		case is && !was:
			come = append(come, a)
		case was && !is:
			gone[a] = true
		}
	}
	if len(come)+len(gone) == 0 {
		return old, true
	}
	idr := ruleset.IDBytes(id)
	out := make([]ruleset.Elem, 0, len(old)+len(come)-len(gone))
	keys := make([]ruleset.Range, 0, 2*len(come))
	for _, e := range old {
		for len(come) > 0 && come[0] < e.Key[1].From {
			k := len(keys)
			keys = append(keys, ruleset.Range{From: idr, To: idr}, ruleset.Range{From: come[0], To: come[0]})
			out, come = append(out, ruleset.Elem{Key: keys[k : k+2 : k+2]}), come[1:]
		}
		if !gone[e.Key[1].From] {
			out = append(out, e)
		}
	}
	for _, a := range come {
		k := len(keys)
		keys = append(keys, ruleset.Range{From: idr, To: idr}, ruleset.Range{From: a, To: a})
		out = append(out, ruleset.Elem{Key: keys[k : k+2 : k+2]})
	}
	return out, true
}
