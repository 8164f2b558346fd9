package policy

import (
	"cmp"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/weir-cni/weir/ruleset"
)

// This file puts the ruleset together: the base chains, the node and pod sets
// and maps, the selection chains, the default verdict of unclassified pods,
// masquerading, anti-spoofing and every policy's objects.
// All of it but the policies' objects and the local part is rebuilt on
// every call: it is small. The local part (the node and pod sets and
// maps, the selection chains) grows with the local pods and the policies
// selecting them; it is rebuilt when one of those changed (localStale).

// ruleset assembles the ruleset from the current state.
func (x *Compiler) ruleset() ruleset.Ruleset {
	var gone []string                    // chains leaving x.chains
	var polChains, local []ruleset.Chain // and joining it, sorted
	if x.polStale {
		gone, polChains = x.policyPart()
	}
	x.moveSelections()
	if x.localStale {
		last := x.localChains
		x.localPart()
		var left []string
		left, local = chainChanges(last, x.localChains)
		gone = append(gone, left...)
		x.localStale = false
	}
	var r ruleset.Ruleset
	sets := make([]ruleset.Set, 0, len(skeletonSets)+4)
	for _, sk := range skeletonSets {
		if sk.Key[0] == ruleset.TypeID {
			sets = append(sets, x.sharedSets(sk)...)
			continue
		}
		set := sk
		set.Key = slices.Clone(sk.Key)
		switch set.Name {
		case setGroupsIn:
			set.Elems = ruleset.SortElems(x.nsGroups[0])
		case setGroupsEg:
			set.Elems = ruleset.SortElems(x.nsGroups[1])
		default:
			set.Elems = x.localSets[set.Name]
		}
		sets = append(sets, set)
	}
	chains := make([]ruleset.Chain, 0, 8)
	chains = append(chains, forwardChains(x.ifPrefix)...)
	chains = append(chains, inputChain(x.ifPrefix))
	sets, chains = x.masquerade(sets, chains)
	sets, chains = spoof(x.ifPrefix, sets, chains)
	sets, chains, r.DNS = x.dnsPart(sets, chains)
	slices.SortFunc(sets, func(a, b ruleset.Set) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(chains, func(a, b ruleset.Chain) int { return strings.Compare(a.Name, b.Name) })
	r.Sets = sets
	r.Counters = x.polCounters // shared by the rulesets: clipped
	if dns := dnsCounters(r.DNS); dns != nil {
		r.Counters = merge(dns, x.polCounters, counterName)
	}
	gone = append(gone, x.rebuilt...)
	x.rebuilt = x.rebuilt[:0]
	for _, ch := range chains {
		x.rebuilt = append(x.rebuilt, ch.Name)
	}
	x.chains = replace(x.chains, gone, merge(merge(chains, local, chainName), polChains, chainName), chainName)
	r.Chains = x.chains
	r.Problems = x.polProblems
	return r
}

// localPart rebuilds the local part: the elements of the node's and the
// local pods' sets and maps, sorted, by set name (x.localSets), and the
// selection chains, sorted by name (x.localChains).
func (x *Compiler) localPart() {
	elems := x.nodeElems()
	for name, es := range x.dispatch() {
		elems[name] = es
	}
	x.tierDispatch(elems)
	for name, es := range elems {
		elems[name] = ruleset.SortElems(es)
	}
	x.localSets = elems
	x.localChains = x.sortedLocalChains()
}

// sortedLocalChains returns the selection chains of x.selChains and
// x.tierChains sorted by name: those of the last ones that stay in their
// last order, merged with the selection chains dispatch made for pods
// whose selection changed (x.madeSel), sorted, when that accounts for
// every chain, as it mostly does; else all of them sorted.
func (x *Compiler) sortedLocalChains() []ruleset.Chain {
	n := len(x.selChains) + len(x.tierChains)
	if chains, ok := x.keptLocalChains(n); ok {
		return chains
	}
	chains := make([]ruleset.Chain, 0, n)
	for _, ch := range x.selChains {
		chains = append(chains, ch)
	}
	for _, ch := range x.tierChains {
		chains = append(chains, ch)
	}
	slices.SortFunc(chains, func(a, b ruleset.Chain) int { return strings.Compare(a.Name, b.Name) })
	return chains
}

// keptLocalChains is sortedLocalChains from the last local chains and
// x.madeSel, when they account for the n chains: false when they do not,
// or a name is both a selection and a tier selection chain.
func (x *Compiler) keptLocalChains(n int) ([]ruleset.Chain, bool) {
	kept := make([]ruleset.Chain, 0, n)
	for _, last := range x.localChains {
		ch, sel := x.selChains[last.Name]
		tch, tier := x.tierChains[last.Name]
		switch {
		case sel && tier:
			return nil, false
		case sel:
			kept = append(kept, ch)
		case tier:
			kept = append(kept, tch)
		}
	}
	slices.Sort(x.madeSel)
	var made []ruleset.Chain
	for _, name := range slices.Compact(x.madeSel) {
		if _, last := slices.BinarySearchFunc(x.localChains, name, func(c ruleset.Chain, name string) int { return strings.Compare(c.Name, name) }); !last {
			made = append(made, x.selChains[name])
		}
	}
	if len(kept)+len(made) != n {
		return nil, false
	}
	if len(made) == 0 {
		return kept, true
	}
	return merge(kept, made, chainName), true
}

// chainChanges returns the names of the chains of last that are not in
// now as they were (same name, base and rules' memory), and the chains of
// now that were not in last so: both lists sorted by name, as are the
// results.
func chainChanges(last, now []ruleset.Chain) (gone []string, added []ruleset.Chain) {
	for len(last) > 0 || len(now) > 0 {
		switch {
		case len(now) == 0 || len(last) > 0 && last[0].Name < now[0].Name:
			gone, last = append(gone, last[0].Name), last[1:]
		case len(last) == 0 || now[0].Name < last[0].Name:
			added, now = append(added, now[0]), now[1:]
		default:
			if last[0].Base != now[0].Base || !sameSlice(last[0].Rules, now[0].Rules) {
				gone, added = append(gone, last[0].Name), append(added, now[0])
			}
			last, now = last[1:], now[1:]
		}
	}
	return gone, added
}

// policyPart updates the sorted counters of every policy, and the groups
// of the shared sets, after some policies changed: the objects of their
// last outputs (x.replaced) leave, those of their new outputs (x.changed)
// join. It returns the names of the chains that leave and the chains that
// join (sorted), for ruleset to replace. A policy whose peer groups only
// were listed again keeps its chains and counters where they are: only
// its groups leave and join.
func (x *Compiler) policyPart() (goneChains []string, chains []ruleset.Chain) {
	var goneCounters []string
	var goneCounterList []ruleset.Counter
	for _, out := range x.replaced {
		for _, ch := range out.chains {
			goneChains = append(goneChains, ch.Name)
		}
		for _, c := range out.counters {
			goneCounters = append(goneCounters, c.Name)
		}
		goneCounterList = append(goneCounterList, out.counters...)
	}
	nc, nk := 0, 0
	for ps, whole := range x.changed {
		if whole {
			nc, nk = nc+len(ps.out.chains), nk+len(ps.out.counters)
		}
	}
	chains = make([]ruleset.Chain, 0, nc)
	counters := make([]ruleset.Counter, 0, nk)
	problems := false // some output that comes or goes has problems
	for ps, whole := range x.changed {
		if ps.gen != x.gen { // removed since
			continue
		}
		if whole {
			chains = append(chains, ps.out.chains...)
			counters = append(counters, ps.out.counters...)
			problems = problems || len(ps.out.problems) > 0
		}
		x.useGroups(ps.out.groups, true)
	}
	for _, out := range x.replaced {
		x.useGroups(out.groups, false)
		problems = problems || len(out.problems) > 0
	}
	x.releaseIDs()
	slices.SortFunc(chains, func(a, b ruleset.Chain) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(counters, compareCounters)
	if slices.SortFunc(goneCounterList, compareCounters); !slices.EqualFunc(goneCounterList, counters, sameCounter) {
		// Otherwise the list stays, the same memory: Diff finds the
		// counters unchanged without comparing them.
		x.polCounters = slices.Clip(replace(x.polCounters, goneCounters, counters, counterName))
	}
	if problems { // else every policy's problems stay
		x.polProblems = nil
		for _, ps := range x.polOrder {
			x.polProblems = append(x.polProblems, ps.out.problems...)
		}
		for _, ps := range x.cpOrder {
			x.polProblems = append(x.polProblems, ps.out.problems...)
		}
		slices.Sort(x.polProblems)
		x.polProblems = slices.Clip(x.polProblems) // shared by every ruleset: appends must copy
	}
	if x.groupsStale {
		x.nsGroups[0], x.nsGroups[1] = isolatingGroups(x.polOrder)
		x.groupsStale = false
	}
	clear(x.replaced)
	x.replaced = x.replaced[:0]
	clear(x.changed)
	x.polStale = false
	return goneChains, chains
}

func counterName(c ruleset.Counter) string { return c.Name }

func chainName(c ruleset.Chain) string { return c.Name }

func compareCounters(a, b ruleset.Counter) int { return strings.Compare(a.Name, b.Name) }

// sameCounter tells whether two counters have the same name and owner (a
// policy compiled again points to its new rules' owners).
func sameCounter(a, b ruleset.Counter) bool { return a.Name == b.Name && a.Owner() == b.Owner() }

// replace returns a copy of list, sorted by name, without the elements
// named in gone (in any order) and with those of add (sorted by name)
// merged in, list's first on equal names. Each name is found by binary
// search: a few changed policies' objects replace theirs among every
// policy's for the cost of one copy, not a comparison per object.
func replace[T any](list []T, gone []string, add []T, name func(T) string) []T {
	slices.Sort(gone)
	gone = slices.Compact(gone)
	out := make([]T, 0, len(list)+len(add))
	for len(gone) > 0 || len(add) > 0 {
		if len(gone) > 0 && (len(add) == 0 || gone[0] <= name(add[0])) {
			g := gone[0]
			i := sort.Search(len(list), func(i int) bool { return name(list[i]) >= g })
			out = append(out, list[:i]...)
			for list = list[i:]; len(list) > 0 && name(list[0]) == g; {
				list = list[1:]
			}
			gone = gone[1:]
			continue
		}
		n := name(add[0])
		i := sort.Search(len(list), func(i int) bool { return name(list[i]) > n })
		out = append(append(out, list[:i]...), add[0])
		list, add = list[i:], add[1:]
	}
	return append(out, list...)
}

// merge merges two lists sorted by name into a new one, a's first on
// equal names. Each element of the shorter list goes after the run of the
// longer's that its name ends, found by binary search: merging a few
// changed policies' objects into every policy's costs a copy, not a
// comparison per object.
func merge[T any](a, b []T, name func(T) string) []T {
	out := make([]T, 0, len(a)+len(b))
	if len(a) < len(b) {
		for _, e := range a {
			n := name(e)
			i := sort.Search(len(b), func(i int) bool { return name(b[i]) >= n })
			out = append(append(out, b[:i]...), e)
			b = b[i:]
		}
		return append(out, b...)
	}
	for _, e := range b {
		n := name(e)
		i := sort.Search(len(a), func(i int) bool { return name(a[i]) > n })
		out = append(append(out, a[:i]...), e)
		a = a[i:]
	}
	return append(out, a...)
}

// nodeElems returns the elements of the node's addresses, of every local
// pod's self pair and of every local pod's addresses, by set name.
func (x *Compiler) nodeElems() map[string][]ruleset.Elem {
	out := make(map[string][]ruleset.Elem, len(skeletonSets))
	for _, a := range x.node.Addrs {
		a = a.Unmap()
		name := familySet(a, setNodeAddrs4, setNodeAddrs6)
		out[name] = append(out[name], ruleset.Elem{Key: []ruleset.Range{single(a)}})
	}
	for f, pods := range x.localOrders() {
		for _, p := range pods {
			le := p.localElems()
			if le.self == nil {
				for _, ip := range p.IPs {
					k := single(ip.Unmap())
					le.self = append(le.self, ruleset.Elem{Key: []ruleset.Range{k, k}})
				}
			}
			for _, e := range le.self {
				if elemFamily(e) != f {
					continue
				}
				self, local := setSelf4, setLocalPods4
				if f == 1 {
					self, local = setSelf6, setLocalPods6
				}
				x.appendLocal(out, self, e)
				x.appendLocal(out, local, ruleset.Elem{Key: e.Key[:1]})
			}
		}
	}
	return out
}

// appendLocal appends e to the elements of set name in out, made with
// room for as many as the set had in the last local part.
func (x *Compiler) appendLocal(out map[string][]ruleset.Elem, name string, e ruleset.Elem) {
	es, ok := out[name]
	if !ok {
		es = make([]ruleset.Elem, 0, max(1, len(x.localSets[name])))
	}
	out[name] = append(es, e)
}

// elemFamily is the family of an element keyed by an address first: 0
// for IPv4, 1 for IPv6.
func elemFamily(e ruleset.Elem) int {
	if len(e.Key[0].From) == 16 {
		return 1
	}
	return 0
}

// localOrders returns the local pods with addresses of each family (IPv4,
// IPv6), in the order the local part lists their elements. That is by
// namespace and name: of two local pods sharing an address, the pod
// maps' element is the first's (see sortedPods). Unless a pod has two
// addresses of one family, each family's are sorted by their address of
// that family first, which leaves the order of pods of one address and
// puts their elements in key order: SortElems finds them sorted instead
// of sorting them again on every change. The orders are kept until a
// local pod comes, goes or changes its addresses.
func (x *Compiler) localOrders() [2][]*podRec {
	if !x.orderStale {
		return x.localOrder
	}
	pods := sortedPods(x.local)
	order := [2][]*podRec{make([]*podRec, 0, len(pods)), nil}
	addrs := make(map[*podRec][2]netip.Addr, len(pods))
	several := false // a pod with two addresses of one family
	for _, p := range pods {
		var a [2]netip.Addr
		for _, ip := range p.IPs {
			ip = ip.Unmap()
			f := 0
			if !ip.Is4() {
				f = 1
			}
			several = several || a[f].IsValid()
			a[f] = ip
		}
		for f := range a {
			if a[f].IsValid() {
				order[f] = append(order[f], p)
			}
		}
		addrs[p] = a
	}
	for f := range order {
		if !several {
			slices.SortStableFunc(order[f], func(p, q *podRec) int { return addrs[p][f].Compare(addrs[q][f]) })
		}
	}
	x.localOrder, x.orderStale = order, false
	return order
}

func familySet(a netip.Addr, v4, v6 string) string {
	if a.Is4() {
		return v4
	}
	return v6
}

// dispatch returns the elements of the pod maps and of the sets of their
// keys: each isolated local pod jumps to the chain of the policies that
// select it, which tries each policy (the base chain then drops:
// isolationRule), or to the chain of its only policy when denied packets
// are not logged (the log rule ends a selection chain). It leaves the
// selection chains in x.selChains.
func (x *Compiler) dispatch() map[string][]ruleset.Elem {
	by := x.podSel // sorted: a selection lists its policies in order
	maps := [2][2]string{{mapIngress4, mapIngress6}, {mapEgress4, mapEgress6}}
	isolated := [2][2]string{{setIngressIsolated4, setIngressIsolated6}, {setEgressIsolated4, setEgressIsolated6}}
	dirs := [2]direction{dirIngress, dirEgress}
	out := make(map[string][]ruleset.Elem, 4)
	clear(x.selChains) // the results hold copies of its chains
	x.madeSel = x.madeSel[:0]
	var id strings.Builder
	for f, pods := range x.localOrders() {
		for _, p := range pods {
			sel := by[p]
			if sel == nil {
				continue
			}
			for d, list := range sel {
				if len(list) == 0 {
					continue
				}
				for _, e := range x.podJumps(p, d, &id, dirs[d], list) {
					if elemFamily(e) == f {
						x.appendLocal(out, maps[d][f], e)
						x.appendLocal(out, isolated[d][f], ruleset.Elem{Key: e.Key})
					}
				}
			}
		}
	}
	return out
}

// podJumps returns the pod map elements of local pod p for direction d
// (index d, selected by list): each of its addresses jumps to its target,
// kept from the last call while the target stays.
func (x *Compiler) podJumps(p *podRec, d int, id *strings.Builder, dir direction, list []*policyState) []ruleset.Elem {
	j := &p.localElems().jump[d]
	name := x.podTarget(j, id, dir, p.Namespace, list)
	if j.chain != name || j.elems == nil {
		j.chain, j.elems = name, make([]ruleset.Elem, 0, len(p.IPs))
		jump := &ruleset.Verdict{Kind: ruleset.VerdictJump, Chain: name}
		for _, ip := range p.IPs {
			j.elems = append(j.elems, ruleset.Elem{Key: []ruleset.Range{single(ip.Unmap())}, Verdict: jump})
		}
	}
	return j.elems
}

// podSelection is the NetworkPolicies selecting a local pod, per direction,
// sorted by key.
type podSelection [2][]*policyState

// selMove is a NetworkPolicy's change of selection: the local pods it
// selected (from) and selects (to), per direction.
type selMove struct {
	ps       *policyState
	from, to [2][]*podRec
}

// moveSelections brings x.podSel up to date with the selections that
// changed since (x.selMoves). A pod's lists are replaced, never modified:
// its targets keep the lists they were made for (jumpElems.sel).
func (x *Compiler) moveSelections() {
	for _, m := range x.selMoves {
		for d := range m.from {
			for _, p := range m.from[d] {
				x.unselect(p, d, m.ps)
			}
			for _, p := range m.to[d] {
				x.selectPod(p, d, m.ps)
			}
		}
	}
	clear(x.selMoves)
	x.selMoves = x.selMoves[:0]
}

// unselect takes ps out of the policies selecting p for direction d.
func (x *Compiler) unselect(p *podRec, d int, ps *policyState) {
	s := x.podSel[p]
	if s == nil {
		return
	}
	if i := slices.Index(s[d], ps); i >= 0 {
		s[d] = slices.Concat(s[d][:i], s[d][i+1:])
	}
	if len(s[0])+len(s[1]) == 0 {
		delete(x.podSel, p)
	}
}

// selectPod adds ps, in key order, to the policies selecting p for
// direction d.
func (x *Compiler) selectPod(p *podRec, d int, ps *policyState) {
	s := x.podSel[p]
	if s == nil {
		s = &podSelection{}
		x.podSel[p] = s
	}
	i, _ := slices.BinarySearchFunc(s[d], ps.key, func(q *policyState, key string) int { return strings.Compare(q.key, key) })
	s[d] = slices.Concat(s[d][:i], []*policyState{ps}, s[d][i:])
}

// podTarget is selectionTarget for a pod whose pod map elements are j:
// the target j holds when the pod's selection is the one j was made for,
// its selection chain kept in x.selChains again, without building the
// selection's identity.
func (x *Compiler) podTarget(j *jumpElems, id *strings.Builder, d direction, ns string, list []*policyState) string {
	if j.elems != nil && slices.Equal(j.sel, list) {
		if j.selChain != nil {
			x.selChains[j.chain] = *j.selChain
		}
		return j.chain
	}
	name := x.selectionTarget(id, d, ns, list)
	j.sel, j.selChain = list, nil
	if ch, ok := x.selChains[name]; ok {
		j.selChain = &ch
		x.madeSel = append(x.madeSel, name)
	}
	return name
}

// sortedPods returns the pods of m sorted by namespace and name. Two
// local pods may share an address (see snapshot.Build): a pod map's
// element for it is then the first pod's (SortElems keeps the first of
// equal keys), which must not depend on the order of a map.
func sortedPods[V any](m map[*podRec]V) []*podRec {
	out := make([]*podRec, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *podRec) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

// selectionTarget returns the name of the chain the pod map elements of
// pods in namespace ns that list selects for direction d jump to: the
// chain of list's only policy, unless denied packets are logged, or else
// list's selection chain. id is scratch space for the selection's
// identity.
func (x *Compiler) selectionTarget(id *strings.Builder, d direction, ns string, list []*policyState) string {
	if len(list) == 1 && x.logDenied.Group == 0 {
		return policyChainNameHash(d, list[0].hash, list[0].key)
	}
	id.Reset()
	id.WriteString(string(d))
	id.WriteString(ns)
	for _, ps := range list {
		id.WriteByte(0)
		id.WriteString(ps.key)
	}
	return x.selectionChain(id.String(), d, ns, list)
}

// selectionChain returns the name of the selection chain of list (whose
// identity is id) and keeps the chain in x.selChains. Chains are memoized
// by id: their content depends on it alone.
func (x *Compiler) selectionChain(id string, d direction, ns string, list []*policyState) string {
	ch, ok := x.selMemo[id]
	if !ok {
		keys := make([]string, len(list))
		for i, ps := range list {
			keys[i] = ps.key
		}
		n := len(list)
		if x.logDenied.Group != 0 {
			n++
		}
		ch = ruleset.Chain{Name: selectionChainName(d, ns, keys), Rules: make([]ruleset.Rule, 0, n)}
		for _, ps := range list {
			ch.Rules = append(ch.Rules, ruleset.Rule{
				Verdict: ruleset.Verdict{Kind: ruleset.VerdictJump, Chain: policyChainNameHash(d, ps.hash, ps.key)},
				Owner:   ruleset.Owner{Kind: ruleset.OwnerPolicy, Namespace: ps.pol.Namespace, Policy: ps.pol.Name, Direction: d.long()},
			})
		}
		if l := x.logDenied; l.Group != 0 {
			prefix := DeniedPrefix + ch.Name
			if len(prefix) > maxLogPrefix {
				prefix = prefix[:maxLogPrefix]
			}
			ch.Rules = append(ch.Rules, ruleset.Rule{Log: &ruleset.Log{Prefix: prefix, Group: l.Group, Rate: l.Rate}})
		}
		if len(x.selMemo) >= maxParsed {
			clear(x.selMemo)
		}
		x.selMemo[id] = ch
	}
	x.selChains[ch.Name] = ch
	return ch.Name
}

// masquerade adds the nat chain: traffic from this node's pod CIDRs to
// anything outside the cluster CIDRs leaves with the node's address. A
// family is masqueraded only when the cluster has CIDRs of that family.
func (x *Compiler) masquerade(sets []ruleset.Set, chains []ruleset.Chain) ([]ruleset.Set, []ruleset.Chain) {
	if len(x.cluster) == 0 {
		return sets, chains
	}
	pod := map[bool][]netip.Prefix{}
	cluster := map[bool][]netip.Prefix{}
	for _, p := range x.node.PodCIDRs {
		pod[p.Addr().Is4()] = append(pod[p.Addr().Is4()], p.Masked())
	}
	for _, p := range x.cluster {
		cluster[p.Addr().Is4()] = append(cluster[p.Addr().Is4()], p.Masked())
	}
	ch := ruleset.Chain{Name: chainMasq, Base: &ruleset.Base{Type: "nat", Hook: ruleset.HookPostrouting, Priority: ruleset.PrioritySrcNAT}}
	for _, f := range families {
		v4 := f.typ == ruleset.TypeIPv4
		if len(pod[v4]) == 0 || len(cluster[v4]) == 0 {
			continue
		}
		sets = append(sets,
			ruleset.Set{Name: f.podCIDRs, Key: []ruleset.Type{f.typ}, Interval: true, Comment: "pod CIDRs of this node",
				Elems: ruleset.SortElems(intervalElems(unionIntervals(prefixIntervals(pod[v4]))))},
			ruleset.Set{Name: f.cluster, Key: []ruleset.Type{f.typ}, Interval: true, Comment: "pod CIDRs of the cluster",
				Elems: ruleset.SortElems(intervalElems(unionIntervals(prefixIntervals(cluster[v4]))))})
		ch.Rules = append(ch.Rules, ruleset.Rule{
			Matches: []ruleset.Match{
				{Kind: ruleset.MatchLookup, Fields: []ruleset.Field{f.saddr}, Set: f.podCIDRs},
				{Kind: ruleset.MatchLookup, Fields: []ruleset.Field{f.daddr}, Set: f.cluster, Negate: true},
			},
			Verdict: ruleset.Verdict{Kind: ruleset.VerdictMasquerade},
			Owner:   ruleset.Owner{Kind: ruleset.OwnerMasquerade},
		})
	}
	return sets, append(chains, ch)
}

// minHashSize is the least size of a shared hash set (see hashSize).
const minHashSize = 1 << 10

// hashSize is the size a shared hash set is declared with for n elements:
// the power of two at least n, and at least minHashSize. The kernel sizes
// a hash set's table from it once, instead of growing it again and again
// while a full sync inserts its elements (a fifth less kernel time for the
// 24,000 elements of the dense benchmark), with more buckets than its size
// (a power of two at least 4/3 of it). It zeroes that table on every full
// sync, so the size follows the elements instead of a high floor: each of
// the four hash sets took 1 MiB under a floor of 65,536, the dense
// benchmark's four now take 0.7 MiB in all. A set holds
// at most its size; a set crossing a class (1,024 elements, then each
// power of two) changes definition, which Diff turns into one full apply.
func hashSize(n int) uint32 {
	size := uint32(minHashSize)
	for size < uint32(n) {
		size <<= 1
	}
	return size
}
