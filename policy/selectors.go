package policy

import (
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// This file holds the Compiler's selector cache: every LabelSelector parsed
// once, the result of every (namespace, pod selector) and namespace
// selector the compiled policies use, and which policies used each result.
// The policies that used a result whose members changed are compiled again.

// podEntry caches the pods of one namespace one selector matches (never
// hostNetwork pods), and which policies used that result.
type podEntry struct {
	ns string
	// local entries hold local pods only: a policy's own selection.
	local bool
	key   string
	sel   labels.Selector
	// members are the pods the selector matches, in no order, each
	// indexed by its place in list: listing the pods of an entry again
	// walks a slice, not a map.
	members map[*podRec]int
	list    []*podRec
	// sorted are the members' addresses, once listed (see addrs).
	sorted   *memberAddrs
	sortOnce sync.Once
	users    map[*policyState]struct{}
	// ver counts the changes of members: a pod joining, leaving, or
	// changing while a member. startVer was ver before its first change
	// in the Compile of generation startGen.
	ver, startVer, startGen uint64
}

type entryID struct {
	ns, sel string
	local   bool
}

// labelKey indexes pods by namespace and label.
type labelKey struct{ ns, k, v string }

// nsEntry caches the namespaces (having pods) a namespace selector matches.
type nsEntry struct {
	key     string
	sel     labels.Selector
	members []string // sorted
	users   map[*policyState]struct{}
}

// parsed is one LabelSelector parsed once.
type parsed struct {
	sel labels.Selector
	err error
}

// maxParsed bounds the parse cache; past it the cache starts over.
const maxParsed = 1 << 14

// selectorKey is a canonical string of a label selector: equal selectors
// give equal keys. The empty selector (everything) has the key "".
func selectorKey(ls *metav1.LabelSelector) string {
	if len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0 {
		return ""
	}
	var b strings.Builder
	keys := make([]string, 0, len(ls.MatchLabels))
	size := 0
	for k, v := range ls.MatchLabels {
		keys = append(keys, k)
		size += len(k) + len(v) + 2
	}
	for _, e := range ls.MatchExpressions {
		size += len(e.Key) + len(e.Operator) + 3
		for _, v := range e.Values {
			size += len(v) + 1
		}
	}
	b.Grow(size) // the key's one allocation
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(1)
		b.WriteString(ls.MatchLabels[k])
		b.WriteByte(0)
	}
	for _, e := range ls.MatchExpressions {
		b.WriteByte(2)
		b.WriteString(e.Key)
		b.WriteByte(1)
		b.WriteString(string(e.Operator))
		for _, v := range e.Values {
			b.WriteByte(1)
			b.WriteString(v)
		}
		b.WriteByte(0)
	}
	return b.String()
}

// selector parses ls once per distinct selector. The policies compiled at
// once share the cache (see compileWholes): it is read and filled under
// x.mu, a selector parsed outside.
func (c *policyBuilder) selector(ls *metav1.LabelSelector) (string, labels.Selector, error) {
	x, key := c.x, selectorKey(ls)
	x.mu.Lock()
	p, ok := x.parsed[key]
	x.mu.Unlock()
	if ok {
		return key, p.sel, p.err
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.parsed) >= maxParsed {
		clear(x.parsed)
	}
	x.parsed[key] = parsed{sel, err}
	return key, sel, err
}

// podEntry returns the cached pods of ns matching sel (of key key), only
// the local ones when local is true, and records that the policy used
// them. A result not cached yet is listed outside x.mu (the pod indexes do
// not change while policies compile), and cached unless another policy
// cached it first.
func (c *policyBuilder) podEntry(ns, key string, sel labels.Selector, local bool) *podEntry {
	x, id := c.x, entryID{ns, key, local}
	x.mu.Lock()
	e := x.entries[id]
	x.mu.Unlock()
	if e == nil {
		e = x.newPodEntry(id, sel)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if cached := x.entries[id]; cached != nil {
		e = cached // maybe by another policy meanwhile
	} else {
		x.keepEntry(id, e)
	}
	if _, ok := e.users[c.ps]; !ok {
		e.users[c.ps] = struct{}{}
		c.ps.entries = append(c.ps.entries, e)
	}
	return e
}

// newPodEntry lists the pods of result id, whose selector is sel. It only
// reads the pod indexes.
func (x *Compiler) newPodEntry(id entryID, sel labels.Selector) *podEntry {
	e := &podEntry{ns: id.ns, local: id.local, key: id.sel, sel: sel, members: map[*podRec]int{}, users: map[*policyState]struct{}{}}
	if id.local {
		e.add(x.localByNS[id.ns])
		return e
	}
	sets, exact := x.candidates(id.ns, sel)
	for _, pods := range sets {
		if exact {
			e.addAll(pods)
		} else {
			e.add(pods)
		}
	}
	return e
}

// keepEntry caches e as result id.
func (x *Compiler) keepEntry(id entryID, e *podEntry) {
	x.entries[id] = e
	if x.entriesByNS[id.ns] == nil {
		x.entriesByNS[id.ns] = map[*podEntry]struct{}{}
	}
	x.entriesByNS[id.ns][e] = struct{}{}
}

// add adds the pods of candidates that e's selector matches.
func (e *podEntry) add(candidates map[*podRec]struct{}) {
	for p := range candidates {
		if e.matches(p) {
			e.join(p)
		}
	}
}

// addAll adds the pods of candidates, which e, not local, all matches
// (see candidates): it reads none of them.
func (e *podEntry) addAll(candidates map[*podRec]struct{}) {
	for p := range candidates {
		e.join(p)
	}
}

// join makes p, not a member, a member of e.
func (e *podEntry) join(p *podRec) {
	e.members[p] = len(e.list)
	e.list = append(e.list, p)
	if e.sorted != nil {
		e.sorted.insert(p.IPs)
	}
}

// leave takes p, a member, out of e: the last member takes its place.
// ips are the addresses p had as a member.
func (e *podEntry) leave(p *podRec, ips []netip.Addr) {
	i, last := e.members[p], len(e.list)-1
	e.list[i] = e.list[last]
	e.members[e.list[i]] = i
	e.list[last] = nil
	e.list = e.list[:last]
	delete(e.members, p)
	if e.sorted != nil {
		e.sorted.remove(ips)
	}
}

// readdress records that p, a member, changed its addresses from ips.
func (e *podEntry) readdress(p *podRec, ips []netip.Addr) {
	if e.sorted != nil && !slices.Equal(ips, p.IPs) {
		e.sorted.remove(ips)
		e.sorted.insert(p.IPs)
	}
}

func (e *podEntry) matches(p *podRec) bool {
	return !p.HostNetwork && (p.local || !e.local) && e.sel.Matches(p)
}

// candidates narrows the pods of ns sel may match with the label index:
// the pods (not hostNetwork) having one of the values of sel's most
// selective equality or set requirement; every pod of ns when sel has
// none. exact tells that sel matches every candidate, as the
// requirement is its only one.
func (x *Compiler) candidates(ns string, sel labels.Selector) (sets []map[*podRec]struct{}, exact bool) {
	reqs, _ := sel.Requirements()
	best, n := []map[*podRec]struct{}(nil), -1
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
		default:
			continue
		}
		var union []map[*podRec]struct{}
		size := 0
		for _, v := range r.ValuesUnsorted() {
			if m := x.labelIdx[labelKey{ns, r.Key(), v}]; len(m) > 0 {
				union = append(union, m)
				size += len(m)
			}
		}
		if n < 0 || size < n {
			best, n = union, size
		}
	}
	if n < 0 {
		return []map[*podRec]struct{}{x.byNS[ns]}, false // some may be hostNetwork
	}
	return best, len(reqs) == 1
}

// nsEntry returns the namespaces having pods that sel (of key key) matches
// and records that the policy used them; like podEntry, it lists them
// outside x.mu.
func (c *policyBuilder) nsEntry(key string, sel labels.Selector) *nsEntry {
	x := c.x
	x.mu.Lock()
	e := x.nsEntries[key]
	x.mu.Unlock()
	if e == nil {
		e = &nsEntry{key: key, sel: sel, users: map[*policyState]struct{}{}, members: x.matchNamespaces(sel)}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if cached := x.nsEntries[key]; cached != nil {
		e = cached
	} else {
		x.nsEntries[key] = e
	}
	if _, ok := e.users[c.ps]; !ok {
		e.users[c.ps] = struct{}{}
		c.ps.nsEntries = append(c.ps.nsEntries, e)
	}
	return e
}

func (x *Compiler) matchNamespaces(sel labels.Selector) []string {
	var out []string
	for ns := range x.byNS {
		if sel.Matches(x.namespaceLabels(ns)) {
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}

func (x *Compiler) namespaceLabels(ns string) labels.Set {
	if l, ok := x.nsLabels[ns]; ok {
		return l
	}
	return labels.Set{labelNamespaceName: ns}
}

// unregister forgets which cached results ps used, before ps is compiled
// again or removed. Results nobody uses are dropped at the end of Compile.
func (x *Compiler) unregister(ps *policyState) {
	for _, e := range ps.entries {
		if delete(e.users, ps); len(e.users) == 0 {
			x.unused = append(x.unused, e)
		}
	}
	for _, e := range ps.nsEntries {
		if delete(e.users, ps); len(e.users) == 0 {
			x.unusedNS = append(x.unusedNS, e)
		}
	}
	ps.entries, ps.nsEntries = ps.entries[:0], ps.nsEntries[:0]
	delete(x.allUsers, ps)
	delete(x.portUsers, ps)
	delete(x.nodeUsers, ps)
}

// sweep drops the cached results no policy uses any more.
func (x *Compiler) sweep() {
	for _, e := range x.unused {
		if len(e.users) > 0 {
			continue // used again
		}
		delete(x.entries, entryID{e.ns, e.key, e.local})
		delete(x.entriesByNS[e.ns], e)
		if len(x.entriesByNS[e.ns]) == 0 {
			delete(x.entriesByNS, e.ns)
		}
	}
	for _, e := range x.unusedNS {
		if len(e.users) == 0 {
			delete(x.nsEntries, e.key)
		}
	}
	clear(x.unused)
	clear(x.unusedNS)
	x.unused, x.unusedNS = x.unused[:0], x.unusedNS[:0]
}

func (x *Compiler) markUsers(users map[*policyState]struct{}) {
	for ps := range users {
		x.dirty[ps] = struct{}{}
	}
}

// refreshNamespaces re-evaluates the cached namespace selectors when a
// namespace changed labels, or gained its first or lost its last pod.
func (x *Compiler) refreshNamespaces() {
	if len(x.nsChanged) == 0 {
		return
	}
	for _, e := range x.nsEntries {
		if m := x.matchNamespaces(e.sel); !slices.Equal(m, e.members) {
			e.members = m
			x.markUsers(e.users)
		}
	}
}
