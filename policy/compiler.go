package policy

import (
	"net/netip"
	"slices"
	"sort"
	"sync"

	"github.com/weir-cni/weir/ruleset"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Compiler compiles snapshots one after the other, keeping what it learnt
// between calls: its output for a snapshot is always the same as
// Compile's, but it finds what changed since the previous snapshot and
// recomputes only that. A pod added, removed or changed is evaluated
// against the selectors its namespace's policies use; only the policies
// whose selected pods or peers changed are compiled again. A policy change
// compiles that policy again. Everything else (node sets, pod maps,
// selection chains) is cheap and rebuilt on every call. Finding the
// changed pods costs a comparison of every pod, unless the snapshot's
// PodDelta lists them relative to the last snapshot compiled (see
// PodDelta).
//
// The Compiler keeps its own copy of every pod but for its Labels map and
// IPs and Ports slices, which it shares. It keeps the policy pointers it
// is given and compares them by pointer first, then by content: like
// objects of an informer cache, a policy given to Compile, and the Labels,
// IPs and Ports of a pod, must not be modified afterwards (give a modified
// copy instead).
//
// The Rulesets it returns share their unchanged sets and chains with the
// previous ones: treat them as read-only. A Compiler is not safe for
// concurrent use.
type Compiler struct {
	gen       uint64
	seq       uint64 // Seq of the last snapshot compiled
	usedDelta bool   // the last Compile took its snapshot's PodDelta
	started   bool
	node      Node
	cluster   []netip.Prefix
	logDenied DeniedLog
	ifPrefix  string // pod interface name prefix, defaulted

	pods         map[podID]*podRec
	order, spare []*podRec // pods in the order of the last snapshot
	byNS         map[string]map[*podRec]struct{}
	local        map[*podRec]struct{}
	localByNS    map[string]map[*podRec]struct{}
	labelIdx     map[labelKey]map[*podRec]struct{} // but hostNetwork pods
	famPods      [2]int                            // pod addresses per family (IPv4, IPv6)
	ports        map[namedPort]*int                // containerPorts defined, with their count
	portsChanged bool
	podsChanged  bool // some pod was added, removed or changed
	nsLabels     map[string]labels.Set
	nsChanged    map[string]bool

	parsed      map[string]parsed
	entries     map[entryID]*podEntry
	entriesByNS map[string]map[*podEntry]struct{}
	nsEntries   map[string]*nsEntry
	unused      []*podEntry // entries that lost their last user
	unusedNS    []*nsEntry
	allUsers    map[*policyState]struct{} // policies that use every pod
	portUsers   map[*policyState]struct{} // policies with named ports

	policies map[podID]*policyState
	polOrder []*policyState // sorted by key
	// polList is the last snapshot's list of NetworkPolicies and
	// polListed their states, in its order (nil for a nil policy);
	// polSpare is the memory of the previous ones, reused.
	polList        []*networkingv1.NetworkPolicy
	polListed      []*policyState
	polSpare       []*networkingv1.NetworkPolicy
	polListedSpare []*policyState
	// ClusterNetworkPolicies by name, and in evaluation order; the
	// cluster's nodes (sorted by name) and the policies with nodes peers.
	cpolicies  map[string]*policyState
	cpOrder    []*policyState
	nodes      []PeerNode
	nodeUsers  map[*policyState]struct{}
	passMark   uint32
	dnsOpt     dnsOptions
	tierChains map[string]ruleset.Chain // tier selection chains of the last call, by name
	fam        [2]bool
	dirty      map[*policyState]struct{}
	selChains  map[string]ruleset.Chain // selection chains of the last call, by name
	madeSel    []string                 // those of them dispatch made for a changed selection
	selMemo    map[string]ruleset.Chain // selection chains by identity
	// chains are the last result's chains, sorted by name: every
	// policy's, the local part's and those rebuilt on every call, named
	// by rebuilt. Each call replaces what changed in one copy.
	chains  []ruleset.Chain
	rebuilt []string
	// Every policy's counters (with fixedCounters) and problems, sorted;
	// polStale when a policy changed since.
	polCounters []ruleset.Counter
	polProblems []string
	polStale    bool
	// groupsStale is set when a NetworkPolicy came, went or changed the
	// directions it isolates: nsGroups are to be rebuilt.
	groupsStale bool
	// nsGroups are the elements of the group sets, ingress and egress
	// (see unclassified.go), rebuilt with the policies' part.
	nsGroups [2][]ruleset.Elem
	// localSets and localChains are the local part of the last result
	// (see localPart), to be rebuilt when localStale: the node's
	// addresses, a local pod, the pods a policy selects or the
	// selection chains' content changed.
	localSets   map[string][]ruleset.Elem
	localChains []ruleset.Chain
	localStale  bool
	// localOrder lists the local pods with addresses of each family
	// (IPv4, IPv6) in the order the local part lists their elements
	// (see localOrders), rebuilt when orderStale: a local pod came, went
	// or changed its addresses.
	localOrder [2][]*podRec
	orderStale bool
	// podSel holds the NetworkPolicies selecting each local pod some
	// selects, the dispatch's input, kept up to date from the selections
	// that changed (selMoves) instead of gathered from every policy.
	podSel   map[*podRec]*podSelection
	selMoves []selMove
	// touched are the addresses (unmapped, then sorted and distinct) the
	// pods added, changed or removed in this Compile had or have, unless
	// touchedOver: more than maxTouched (see patchedElems).
	touched     []netip.Addr
	touchedOver bool
	last        ruleset.Ruleset // the last result
	replaced    []policyOut     // outputs replaced since
	// changed are the policies compiled since: true for those compiled
	// whole, false for those whose peer groups only were listed again
	// (their chains, counters and problems stay).
	changed map[*policyState]bool

	// The shared sets: definition ids, the groups in use, and each shared
	// set's elements (rebuilt when setStale).
	ids       map[string]uint32
	idOwner   map[uint32]string
	idTouched []string // definitions whose id may have lost its last user
	groups    map[groupKey]*groupRec
	// setGroups holds the groups of each shared set or shard, defGroups
	// counts the groups of each definition.
	setGroups map[string]map[*groupRec]struct{}
	defGroups map[string]int
	// hashSizes is the size each shard of a shared hash set was last
	// declared with (see shardSize).
	hashSizes map[string]uint32
	setStale  map[string]bool
	shared    map[string][]ruleset.Elem
	groupMemo map[groupKey]groupOut // groups computed in this Compile call

	// mu guards the caches above that policies compiled at once share
	// (see compileWholes).
	mu sync.Mutex
}

// policyState is one policy and its compiled objects.
type policyState struct {
	key  string // namespace/name
	hash string // ruleset.Hash8(key)
	src  *networkingv1.NetworkPolicy
	pol  *networkingv1.NetworkPolicy // src with its namespace defaulted
	cnp  *cnp.ClusterNetworkPolicy   // or the ClusterNetworkPolicy it is
	gen  uint64
	out  policyOut
	// types are the directions a NetworkPolicy isolates, as last compiled.
	types [2]bool
	// The cached results the last compilation used.
	entries   []*podEntry
	nsEntries []*nsEntry
	// peerOnly tells that the last compilation's output depends on the
	// members of its non-local cached results only through the elements
	// of its groups of peers' pods (see refreshPeers); then compiled is
	// the spec it compiled, fam the families then, vers the versions of
	// entries and fixed the elements charged for its other groups.
	peerOnly bool
	compiled *networkingv1.NetworkPolicy
	fam      [2]bool
	vers     []uint64
	fixed    int
}

// policyOut is what one policy adds to the ruleset: nothing but problems
// when it selects no local pod.
type policyOut struct {
	groups   []groupOut        // groups of the shared sets its rules look up
	chains   []ruleset.Chain   // sorted by name
	counters []ruleset.Counter // sorted by name
	problems []string
	// selected lists the local pods the policy isolates, per direction
	// (0 ingress, 1 egress); for a ClusterNetworkPolicy, those its subject
	// holds, for the directions it has rules for.
	selected [2][]*podRec
	// pass tells, per direction, that an Admin tier policy has Pass rules.
	pass [2]bool
	// dns are the rules of a ClusterNetworkPolicy with domainNames peers.
	dns []dnsOut
}

// NewCompiler returns a Compiler that has seen nothing yet: its first
// Compile is a full one.
func NewCompiler() *Compiler {
	x := &Compiler{}
	x.reset("")
	return x
}

func (x *Compiler) reset(node string) {
	*x = Compiler{
		node:        Node{Name: node},
		pods:        map[podID]*podRec{},
		byNS:        map[string]map[*podRec]struct{}{},
		local:       map[*podRec]struct{}{},
		localByNS:   map[string]map[*podRec]struct{}{},
		labelIdx:    map[labelKey]map[*podRec]struct{}{},
		ports:       map[namedPort]*int{},
		nsLabels:    map[string]labels.Set{},
		nsChanged:   map[string]bool{},
		parsed:      map[string]parsed{},
		entries:     map[entryID]*podEntry{},
		entriesByNS: map[string]map[*podEntry]struct{}{},
		nsEntries:   map[string]*nsEntry{},
		allUsers:    map[*policyState]struct{}{},
		portUsers:   map[*policyState]struct{}{},
		policies:    map[podID]*policyState{},
		cpolicies:   map[string]*policyState{},
		nodeUsers:   map[*policyState]struct{}{},
		tierChains:  map[string]ruleset.Chain{},
		dirty:       map[*policyState]struct{}{},
		selChains:   map[string]ruleset.Chain{},
		selMemo:     map[string]ruleset.Chain{},
		changed:     map[*policyState]bool{},
		ids:         map[string]uint32{},
		idOwner:     map[uint32]string{},
		groups:      map[groupKey]*groupRec{},
		setGroups:   map[string]map[*groupRec]struct{}{},
		defGroups:   map[string]int{},
		hashSizes:   map[string]uint32{},
		setStale:    map[string]bool{},
		shared:      map[string][]ruleset.Elem{},
		groupMemo:   map[groupKey]groupOut{},
		polCounters: slices.Clip(slices.Clone(fixedCounters)),
		localStale:  true,
		orderStale:  true,
		podSel:      map[*podRec]*podSelection{},
	}
}

// Compile returns the ruleset of s, equal to Compile(s).
func (x *Compiler) Compile(s Snapshot) ruleset.Ruleset {
	first := !x.started
	if first || s.Node.Name != x.node.Name {
		x.reset(s.Node.Name) // every pod's locality changes
		first = true
	}
	x.started = true
	x.gen++
	nodeSame := !first && slices.Equal(x.node.Addrs, s.Node.Addrs) &&
		slices.Equal(x.node.PodCIDRs, s.Node.PodCIDRs) && slices.Equal(x.cluster, s.ClusterCIDRs)
	logSame := x.logDenied == s.LogDenied
	if !logSame {
		x.logDenied = s.LogDenied
		clear(x.selMemo) // selection chains end with the log rule
		x.localStale = true
		for p := range x.local { // and a pod's target depends on it
			if p.elems != nil {
				p.elems.jump = [2]jumpElems{}
			}
		}
	}
	ifPrefix := s.PodInterfacePrefix
	if ifPrefix == "" {
		ifPrefix = DefaultPodInterfacePrefix
	}
	ifSame := !first && x.ifPrefix == ifPrefix
	x.ifPrefix = ifPrefix
	if !nodeSame {
		x.localStale = true // the node's addresses
		x.node = Node{Name: s.Node.Name, Addrs: slices.Clone(s.Node.Addrs), PodCIDRs: slices.Clone(s.Node.PodCIDRs)}
		x.cluster = slices.Clone(s.ClusterCIDRs)
	}
	clear(x.dirty)
	clear(x.nsChanged)
	x.touched, x.touchedOver = x.touched[:0], false
	clear(x.groupMemo)
	x.portsChanged, x.podsChanged = false, false
	x.syncNamespaces(s.Namespaces)
	x.usedDelta = x.syncPodDelta(s.Pods, s.PodDelta)
	if !x.usedDelta {
		x.syncPods(s.Pods)
	}
	x.seq = s.Seq
	slices.SortFunc(x.touched, netip.Addr.Compare)
	x.touched = slices.Compact(x.touched)
	x.refreshNamespaces()
	x.syncPolicies(s.Policies)
	passMark := s.TierPassMark
	if passMark == 0 {
		passMark = DefaultTierPassMark
	}
	if passMark != x.passMark || !logSame { // Pass rules mark, Deny rules log
		x.passMark, x.localStale = passMark, true
		for _, ps := range x.cpolicies {
			x.dirty[ps] = struct{}{}
		}
		clear(x.tierChains)
	}
	dnsOpt := dnsOptionsOf(s)
	dnsSame := !first && dnsOpt == x.dnsOpt
	x.dnsOpt = dnsOpt
	x.syncNodes(s.Nodes)
	x.syncClusterPolicies(s.ClusterPolicies)
	if fam := x.families(); first || fam != x.fam {
		x.fam = fam // the sets a rule gets depend on it
		for _, ps := range x.policies {
			x.dirty[ps] = struct{}{}
		}
		for _, ps := range x.cpolicies {
			x.dirty[ps] = struct{}{}
		}
	}
	if x.portsChanged {
		x.markUsers(x.portUsers)
	}
	x.compileDirty()
	if x.polStale {
		x.sweep()
	} else if nodeSame && logSame && ifSame && dnsSame && !x.podsChanged && len(x.nsChanged) == 0 {
		return x.last // nothing changed
	}
	x.last = x.ruleset()
	return x.last
}

// compileDirty compiles the dirty policies still in the snapshot again,
// or only lists the pods of their peer groups again when that is all that
// changed (refreshPeers); the policies compiled whole are compiled on
// several goroutines (compileWholes).
func (x *Compiler) compileDirty() {
	var whole []*policyState
	for ps := range x.dirty {
		if ps.gen != x.gen { // removed
			continue
		}
		if out, ok := x.refreshPeers(ps); ok {
			x.took(ps, out, true)
		} else {
			whole = append(whole, ps)
		}
	}
	for i, out := range x.compileWholes(whole) {
		x.took(whole[i], out, false)
	}
}

// took records out as the new output of ps, of refreshPeers when
// refreshed, else of compileWhole.
func (x *Compiler) took(ps *policyState, out policyOut, refreshed bool) {
	if refreshed { // only the groups of the last output leave
		x.replaced = append(x.replaced, policyOut{groups: ps.out.groups})
	} else {
		x.replaced = append(x.replaced, ps.out)
	}
	x.changed[ps] = x.changed[ps] || !refreshed
	switch {
	case ps.cnp != nil:
		x.localStale = true
	case !sameSelection(ps.out, out):
		x.localStale = true
		x.selMoves = append(x.selMoves, selMove{ps: ps, from: ps.out.selected, to: out.selected})
	}
	ps.out = out
	ps.vers = ps.vers[:0]
	if ps.peerOnly {
		ps.vers = versionsInto(ps.vers, ps.entries)
	}
	x.polStale = true
}

// sameSelection tells whether two outputs of a NetworkPolicy select the
// same local pods, in each direction: its place in the local part stays.
func sameSelection(a, b policyOut) bool {
	return slices.Equal(a.selected[0], b.selected[0]) && slices.Equal(a.selected[1], b.selected[1])
}

// compileWhole compiles one policy from its spec, once unregister
// forgot the cached results it used. It may run on several goroutines at
// once, each compiling another policy: the policyBuilder takes x.mu to
// read and fill the caches they share (see parallel.go).
func (x *Compiler) compileWhole(ps *policyState) policyOut {
	c := &policyBuilder{x: x, ps: ps, chains: map[string]*ruleset.Chain{}}
	if ps.cnp != nil {
		c.compileClusterPolicy(ps.cnp)
	} else {
		c.compilePolicy(ps.pol)
		in, eg, _ := PolicyTypes(ps.pol)
		if t := [2]bool{in, eg}; t != ps.types {
			ps.types = t
			x.mu.Lock()
			x.groupsStale = true
			x.mu.Unlock()
		}
	}
	x.mu.Lock()
	_, allPods := x.allUsers[ps]
	_, ports := x.portUsers[ps]
	x.mu.Unlock()
	ps.peerOnly = ps.cnp == nil && !c.over && !allPods && !ports
	ps.compiled, ps.fam, ps.fixed = ps.src, x.fam, c.elems-c.podElems
	return c.output()
}

// refreshPeers returns the output of ps compiled again when only the
// members of cached results it uses as peers changed since its last
// compilation: its last output with the elements of the groups listed
// from those results listed again. Its rules stay: they name groups by
// definition, never by members. That holds when ps is a NetworkPolicy
// that compiled within its element cap, with the same spec and address
// families, no namespace changed (namespace selectors' results stay), no
// local cached result (its selection) changed, it uses neither every pod
// nor named ports (whose groups depend on pods' ports), and the groups'
// pods, counted as compiling charges them at most, still fit its cap.
func (x *Compiler) refreshPeers(ps *policyState) (policyOut, bool) {
	if !ps.peerOnly || ps.src != ps.compiled || ps.fam != x.fam || len(x.nsChanged) > 0 || len(ps.vers) != len(ps.entries) {
		return policyOut{}, false
	}
	for i, e := range ps.entries {
		if e.local && e.ver != ps.vers[i] {
			return policyOut{}, false
		}
	}
	bound := ps.fixed
	for _, g := range ps.out.groups {
		bound += membersBound(g.from)
	}
	if bound > elementCap {
		return policyOut{}, false
	}
	out := ps.out
	out.groups = slices.Clone(out.groups)
	for i := range out.groups {
		if g := &out.groups[i]; g.from != nil {
			*g = x.relist(*g)
		}
	}
	return out, true
}

// relist returns g with its elements listed again when the members of
// the cached results they came from changed, as groupFrom would.
func (x *Compiler) relist(g groupOut) groupOut {
	k := groupKey{g.base, g.def}
	if m, ok := x.groupMemo[k]; ok {
		return m
	}
	vers := versions(g.from)
	if slices.Equal(vers, g.vers) {
		return g
	}
	listed := g.vers
	g.vers = vers
	g.elems = x.groupElems(g, func(id uint32) []ruleset.Elem {
		if elems, ok := x.patchedElems(id, g.base, g.from, listed, g.elems); ok {
			return elems
		}
		return relistedElems(id, g.base, g.from, g.elems)
	})
	x.groupMemo[k] = g
	return g
}

// syncNamespaces records namespace labels and which namespaces changed.
func (x *Compiler) syncNamespaces(list []Namespace) {
	seen := make(map[string]bool, len(list))
	for _, ns := range list {
		seen[ns.Name] = true
		if old, ok := x.nsLabels[ns.Name]; ok && sameNamespaceLabels(old, ns) {
			continue
		}
		x.nsLabels[ns.Name] = namespaceSet(ns)
		x.nsChanged[ns.Name] = true
	}
	if len(seen) == len(x.nsLabels) {
		return
	}
	for name := range x.nsLabels {
		if !seen[name] {
			delete(x.nsLabels, name)
			x.nsChanged[name] = true
		}
	}
}

// namespaceSet is a namespace's labels plus kubernetes.io/metadata.name
// (unless its labels set that label themselves).
func namespaceSet(ns Namespace) labels.Set {
	l := make(labels.Set, len(ns.Labels)+1)
	l[labelNamespaceName] = ns.Name
	for k, v := range ns.Labels {
		l[k] = v
	}
	return l
}

func sameNamespaceLabels(old labels.Set, ns Namespace) bool {
	n := len(ns.Labels)
	if _, ok := ns.Labels[labelNamespaceName]; !ok {
		n++
		if old[labelNamespaceName] != ns.Name {
			return false
		}
	}
	if len(old) != n {
		return false
	}
	for k, v := range ns.Labels {
		if w, ok := old[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// syncPods brings the pod index up to date with pods. A pod seen twice
// counts once, with its last content.
func (x *Compiler) syncPods(pods []Pod) {
	sl := &slab{}
	if len(x.pods) == 0 { // a full compile
		x.pods = make(map[podID]*podRec, len(pods))
		sl = newSlab(pods)
	}
	order := x.spare[:0]
	seen := 0
	for i := range pods {
		p := &pods[i]
		var rec *podRec
		if i < len(x.order) && x.order[i].Name == p.Name && x.order[i].Namespace == p.Namespace {
			rec = x.order[i] // the usual case: same order as last time
		} else {
			rec = x.pods[podID{p.Namespace, p.Name}]
		}
		switch {
		case rec == nil:
			rec = sl.rec()
			rec.set(p)
			rec.local = rec.Node == x.node.Name && !rec.HostNetwork
			x.pods[podID{p.Namespace, p.Name}] = rec
			x.addPod(rec)
		case rec.gen == x.gen || !rec.same(p):
			x.updatePod(rec, p)
		}
		if rec.gen != x.gen {
			rec.gen = x.gen
			seen++
		}
		rec.idx = len(order)
		order = append(order, rec)
	}
	if seen < len(x.pods) {
		for _, rec := range x.pods {
			if rec.gen != x.gen {
				x.removePod(rec)
			}
		}
	}
	x.spare, x.order = x.order, order
}

// UsedPodDelta tells whether the last Compile found the changed pods from
// its snapshot's PodDelta rather than by comparing every pod.
func (x *Compiler) UsedPodDelta() bool { return x.usedDelta }

// syncPodDelta brings the pod index up to date from d, the pods changed
// since the last snapshot compiled, when podDeltaUsable says it can, and
// tells whether it did.
func (x *Compiler) syncPodDelta(pods []Pod, d *PodDelta) bool {
	if !x.podDeltaUsable(pods, d) {
		return false
	}
	for _, c := range d.Changed {
		id := podID{c.Namespace, c.Name}
		rec := x.pods[id]
		switch {
		case c.Index < 0:
			if rec != nil {
				x.removePod(rec)
				x.unorder(rec)
			}
			continue
		case rec == nil:
			rec = &podRec{}
			rec.set(&pods[c.Index])
			rec.local = rec.Node == x.node.Name && !rec.HostNetwork
			x.pods[id] = rec
			x.addPod(rec)
			rec.idx = len(x.order)
			x.order = append(x.order, rec)
		case !rec.same(&pods[c.Index]):
			x.updatePod(rec, &pods[c.Index])
		}
		rec.gen = x.gen
	}
	return true
}

// podDeltaUsable tells whether d can stand for comparing every pod of
// pods: it must be relative to the last snapshot compiled, name the pods
// found at the indexes it gives, list each pod once and account for the
// number of pods. A last snapshot that held a pod twice needs the full
// comparison.
func (x *Compiler) podDeltaUsable(pods []Pod, d *PodDelta) bool {
	if d == nil || d.Base == 0 || d.Base != x.seq || len(x.pods) == 0 || len(x.order) != len(x.pods) {
		return false
	}
	n := len(x.pods)
	listed := make(map[podID]bool, len(d.Changed))
	for _, c := range d.Changed {
		id := podID{c.Namespace, c.Name}
		if c.Index >= len(pods) || c.Index >= 0 && (pods[c.Index].Namespace != c.Namespace || pods[c.Index].Name != c.Name) || listed[id] {
			return false
		}
		listed[id] = true
		_, known := x.pods[id]
		switch {
		case c.Index >= 0 && !known:
			n++
		case c.Index < 0 && known:
			n--
		}
	}
	return n == len(pods)
}

// unorder takes a removed pod out of x.order, the last pod taking its
// place, so that x.order holds only known pods (syncPods trusts a pod of
// x.order whose name matches).
func (x *Compiler) unorder(rec *podRec) {
	i, last := rec.idx, len(x.order)-1
	if i > last || x.order[i] != rec {
		return
	}
	x.order[i] = x.order[last]
	x.order[i].idx = i
	x.order[last] = nil
	x.order = x.order[:last]
}

// visit returns the state of a policy listed in this Compile: m's under
// id, or a new one of key key() (created). A policy listed for the first
// time in this Compile counts into *seen; unchanged tells that same says
// it compiles as before, and it was listed once only.
func visit[K comparable](x *Compiler, m map[K]*policyState, id K, key func() string, same func(*policyState) bool, seen *int) (ps *policyState, created, unchanged bool) {
	ps = m[id]
	switch {
	case ps == nil:
		k := key()
		ps = &policyState{key: k, hash: ruleset.Hash8(k)}
		m[id] = ps
		created = true
	case ps.gen != x.gen && same(ps):
		ps.gen = x.gen
		*seen++
		return ps, false, true
	}
	if ps.gen != x.gen {
		*seen++
	}
	return ps, created, false
}

// sweepPolicies forgets the policies of m this Compile did not list, and
// tells whether there were any.
func sweepPolicies[K comparable](x *Compiler, m map[K]*policyState) bool {
	removed := false
	for id, ps := range m {
		if ps.gen != x.gen {
			x.unregister(ps)
			delete(m, id)
			x.replaced = append(x.replaced, ps.out)
			removed, x.localStale = true, true
			if ps.cnp == nil {
				x.selMoves = append(x.selMoves, selMove{ps: ps, from: ps.out.selected})
			}
		}
	}
	return removed
}

// syncPolicies records which policies are new, changed or gone. A policy
// object found at its place in the last snapshot's list, as most are,
// is known without looking its name up.
func (x *Compiler) syncPolicies(list []*networkingv1.NetworkPolicy) {
	seen, added := 0, false
	srcs, states := x.polSpare[:0], x.polListedSpare[:0]
	for i, p := range list {
		if ps := x.listedAt(i, p); ps != nil {
			ps.gen = x.gen
			seen++
			srcs, states = append(srcs, p), append(states, ps)
			continue
		}
		srcs, states = append(srcs, p), append(states, nil)
		if p == nil {
			continue
		}
		ns := p.Namespace
		if ns == "" {
			ns = metav1.NamespaceDefault // as the API server and kubectl do
		}
		ps, created, unchanged := visit(x, x.policies, podID{ns, p.Name}, func() string { return ns + "/" + p.Name },
			func(ps *policyState) bool { return samePolicy(ps.src, p) }, &seen)
		states[len(states)-1] = ps
		added = added || created
		if unchanged {
			continue
		}
		ps.gen, ps.src, ps.pol = x.gen, p, p
		if p.Namespace == "" {
			ps.pol = p.DeepCopy()
			ps.pol.Namespace = ns
		}
		x.dirty[ps] = struct{}{}
	}
	clear(x.polList) // the previous lists' pointers are not kept alive
	clear(x.polListed)
	x.polSpare, x.polListedSpare = x.polList, x.polListed
	x.polList, x.polListed = srcs, states
	removed := seen < len(x.policies) && sweepPolicies(x, x.policies)
	if added || removed {
		x.polStale, x.groupsStale = true, true
		x.polOrder = x.polOrder[:0]
		for _, ps := range x.policies {
			x.polOrder = append(x.polOrder, ps)
		}
		sort.Slice(x.polOrder, func(i, j int) bool { return x.polOrder[i].key < x.polOrder[j].key })
	}
}

// listedAt returns the state of policy p, found at index i of the
// snapshot's list, when the last snapshot listed the same object there
// and p is not listed yet in this Compile; else nil. Such a policy is
// unchanged: its state holds that object.
func (x *Compiler) listedAt(i int, p *networkingv1.NetworkPolicy) *policyState {
	if p == nil || i >= len(x.polList) || x.polList[i] != p {
		return nil
	}
	if ps := x.polListed[i]; ps != nil && ps.src == p && ps.gen != x.gen {
		return ps
	}
	return nil
}

// families tells which address families the cluster uses (pod addresses,
// node addresses, CIDRs): rules get sets of the other family only when an
// ipBlock asks for it.
func (x *Compiler) families() [2]bool {
	f := [2]bool{x.famPods[0] > 0, x.famPods[1] > 0}
	mark := func(a netip.Addr) {
		if a.Unmap().Is4() {
			f[0] = true
		} else {
			f[1] = true
		}
	}
	for _, a := range x.node.Addrs {
		mark(a)
	}
	for _, p := range x.node.PodCIDRs {
		mark(p.Addr())
	}
	for _, p := range x.cluster {
		mark(p.Addr())
	}
	return f
}
