package snapshot

import (
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/tools/cache"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// View is the cluster as the snapshot needs it, kept up to date by changes
// instead of being rebuilt from every object on every sync. Its snapshot
// equals Build of the same objects, except for the order of pods:
// a pod keeps its place in the pod slice while it stays (the policy.Compiler
// is fastest when pods come in the same order as last time), a new pod is
// appended, and a gone pod's place goes to the last pod.
//
// The pod slice is reused from sync to sync: a snapshot stays valid only
// until the next apply or reset. Not safe for concurrent use.
type View struct {
	pods map[string]*podSlot // every pod of the source, by key
	// list holds the snapshot's pods in a stable order. Only place and
	// drop write it: they record each pod they write in moved, which the
	// snapshots' PodDelta lists, and a Compiler trusts a delta to name
	// every pod that changed.
	list  []policy.Pod
	slots []*podSlot // slots[i] is the pod of list[i]
	gen   uint64     // reset generation
	// seq is the Seq of the last snapshot (0 before the first); moved
	// are the pods placed in or dropped from list since (see PodDelta).
	seq   uint64
	moved map[podName]struct{}
	// live counts, per address, the pods of list that claim it (see
	// Claims); dying holds, per address, the pods that would yield it
	// (see Yields), in list or not. A pod of dying is in list when none of
	// its addresses is live. recheck lists the addresses whose live count
	// went from or to zero, where the pods of dying are to be checked.
	live    map[netip.Addr]int
	dying   map[netip.Addr]map[*podSlot]struct{}
	recheck []netip.Addr

	namespaces map[string]*corev1.Namespace
	nsPods     map[string]int // pods of list per namespace
	nsList     []policy.Namespace
	nsStale    bool

	policies  map[string]*networkingv1.NetworkPolicy
	polList   []*networkingv1.NetworkPolicy
	polStale  bool
	cnps      map[string]*cnpv1beta1.ClusterNetworkPolicy
	cnpList   []*cnpv1beta1.ClusterNetworkPolicy
	cnpStale  bool
	nodes     map[string]*corev1.Node
	nodeList  []*corev1.Node
	peerList  []policy.PeerNode // nodeList converted (see peerNodes)
	nodeStale bool
}

// podSlot is one pod of the source and its place in the snapshot.
type podSlot struct {
	obj *Pod
	idx int    // index in view.list; -1 when the snapshot leaves it out
	gen uint64 // the last reset that saw it
	// addrs are the addresses the pod counts in view.live, or holds in
	// view.dying when dying; nil when neither.
	addrs []netip.Addr
	dying bool
}

// NewView returns an empty view.
func NewView() *View {
	return &View{
		pods:       map[string]*podSlot{},
		moved:      map[podName]struct{}{},
		namespaces: map[string]*corev1.Namespace{},
		nsPods:     map[string]int{},
		live:       map[netip.Addr]int{},
		dying:      map[netip.Addr]map[*podSlot]struct{}{},
		policies:   map[string]*networkingv1.NetworkPolicy{},
		cnps:       map[string]*cnpv1beta1.ClusterNetworkPolicy{},
		nodes:      map[string]*corev1.Node{},
	}
}

// Apply brings the view up to date with c. It returns the keys of the
// pods that c deletes, each with the pod the view had (nil if none).
func (v *View) Apply(c Changes) (gone map[string]*Pod) {
	if c.Full {
		return v.reset(c.Objects)
	}
	for key, p := range c.Pods {
		if p == nil {
			gone = addGone(gone, key, v.Pod(key))
		}
		v.setPod(key, p)
	}
	for key, ns := range c.Namespaces {
		setObj(v.namespaces, key, ns, &v.nsStale)
	}
	for key, p := range c.Policies {
		setObj(v.policies, key, p, &v.polStale)
	}
	for key, p := range c.ClusterPolicies {
		setObj(v.cnps, key, p, &v.cnpStale)
	}
	for key, n := range c.Nodes {
		setObj(v.nodes, key, n, &v.nodeStale)
	}
	return gone
}

func addGone(gone map[string]*Pod, key string, p *Pod) map[string]*Pod {
	if gone == nil {
		gone = map[string]*Pod{}
	}
	gone[key] = p
	return gone
}

// reset makes the view hold exactly o. Objects that are the same pointers
// as before cost a map lookup; pods that stay keep their place. It
// returns the pods it removes, by key.
func (v *View) reset(o Objects) (gone map[string]*Pod) {
	v.gen++
	for _, p := range o.Pods {
		key := cache.NewObjectName(p.Namespace, p.Name).String()
		if s := v.pods[key]; s == nil || s.obj != p {
			v.setPod(key, p)
		}
		v.pods[key].gen = v.gen
	}
	for key, s := range v.pods {
		if s.gen != v.gen {
			gone = addGone(gone, key, s.obj)
			v.setPod(key, nil)
		}
	}
	resetObjs(v.namespaces, o.Namespaces, &v.nsStale)
	resetObjs(v.policies, o.Policies, &v.polStale)
	resetObjs(v.cnps, o.ClusterPolicies, &v.cnpStale)
	resetObjs(v.nodes, o.Nodes, &v.nodeStale)
	return gone
}

// setPod records pod key as p, or its removal when p is nil.
func (v *View) setPod(key string, p *Pod) {
	s := v.pods[key]
	if p == nil {
		if s != nil {
			v.unindex(s)
			v.drop(s)
			delete(v.pods, key)
			v.recheckDying()
		}
		return
	}
	if s == nil {
		s = &podSlot{idx: -1, gen: v.gen}
		v.pods[key] = s
	}
	s.obj = p
	np, ok := ConvertPod(p)
	switch {
	case !ok:
		v.unindex(s)
		v.drop(s)
	case v.reindex(s, np, p):
		v.place(s, np)
	default:
		v.drop(s) // a pod being deleted whose address another pod won
	}
	v.recheckDying()
}

// place puts np, the pod of s, in the snapshot: at s's place if it has
// one (the key holds the namespace: it cannot change), or at the end.
func (v *View) place(s *podSlot, np policy.Pod) {
	v.moved[podName{np.Namespace, np.Name}] = struct{}{}
	if s.idx >= 0 {
		v.list[s.idx] = np
		return
	}
	s.idx = len(v.list)
	v.list = append(v.list, np)
	v.slots = append(v.slots, s)
	v.countNS(np.Namespace, 1)
}

// drop takes s's pod out of the snapshot: the last pod takes its place.
func (v *View) drop(s *podSlot) {
	if s.idx < 0 {
		return
	}
	i, last := s.idx, len(v.list)-1
	v.moved[podName{v.list[i].Namespace, v.list[i].Name}] = struct{}{}
	v.countNS(v.list[i].Namespace, -1)
	v.list[i], v.slots[i] = v.list[last], v.slots[last]
	v.slots[i].idx = i
	v.list[last], v.slots[last] = policy.Pod{}, nil // let go of labels and slot
	v.list, v.slots = v.list[:last], v.slots[:last]
	s.idx = -1
}

// countNS keeps the number of snapshot pods per namespace; a namespace
// that gains its first pod or loses its last may appear in or leave the
// namespace list (see Build's implicit namespaces).
func (v *View) countNS(ns string, d int) {
	n := v.nsPods[ns] + d
	if n == 0 {
		delete(v.nsPods, ns)
	} else {
		v.nsPods[ns] = n
	}
	if n == 0 || n == d {
		v.nsStale = true
	}
}

// setObj records key as obj, or its removal when obj is nil.
func setObj[T comparable](m map[string]T, key string, obj T, stale *bool) {
	var zero T
	if old, ok := m[key]; ok && old == obj {
		return
	}
	if obj == zero {
		if _, ok := m[key]; !ok {
			return
		}
		delete(m, key)
	} else {
		m[key] = obj
	}
	*stale = true
}

type named interface {
	comparable
	GetNamespace() string
	GetName() string
}

// resetObjs makes m hold exactly list.
func resetObjs[T named](m map[string]T, list []T, stale *bool) {
	seen := make(map[string]bool, len(list))
	for _, o := range list {
		key := cache.NewObjectName(o.GetNamespace(), o.GetName()).String()
		seen[key] = true
		setObj(m, key, o, stale)
	}
	if len(seen) == len(m) {
		return
	}
	for key := range m {
		if !seen[key] {
			delete(m, key)
			*stale = true
		}
	}
}

// Snapshot returns the snapshot of node nodeName; see Build. Its
// pod slice is the view's own: do not modify it, and do not keep it past
// the next apply or reset.
func (v *View) Snapshot(nodeName string, clusterCIDRs []netip.Prefix) policy.Snapshot {
	s := policy.Snapshot{Node: policy.Node{Name: nodeName}, ClusterCIDRs: clusterCIDRs,
		Namespaces: v.namespaceList(), Pods: v.list,
		Policies:        sortedObjs(v.policies, &v.polList, &v.polStale),
		ClusterPolicies: sortedObjs(v.cnps, &v.cnpList, &v.cnpStale)}
	_, s.Nodes = v.nodeLists()
	if n := v.nodes[nodeName]; n != nil {
		s.Node.Addrs = nodeAddrs(n)
		s.Node.PodCIDRs = ParsePrefixes(n.Spec.PodCIDRs, n.Spec.PodCIDR)
	}
	s.Seq, s.PodDelta = v.podDelta()
	return s
}

// podName is a pod's namespace and name.
type podName struct{ ns, name string }

// seqs numbers the snapshots of every view of the process: a Compiler
// given the snapshots of a new view never takes a delta for one of an
// older view's.
var seqs atomic.Uint64

// NewSeq returns a Seq that no snapshot of the process had nor will have,
// for a snapshot derived from a view's (see policy.Snapshot.Seq).
func NewSeq() uint64 { return seqs.Add(1) }

// podDelta numbers a new snapshot and returns, unless it is the view's
// first, the pods placed or dropped since the last: where each is now, or
// -1 (a pod that only moved, to fill a dropped pod's place, is not listed).
func (v *View) podDelta() (uint64, *policy.PodDelta) {
	seq := NewSeq()
	var d *policy.PodDelta
	if v.seq != 0 {
		d = &policy.PodDelta{Base: v.seq, Changed: make([]policy.PodChange, 0, len(v.moved))}
		for n := range v.moved {
			i := -1
			if s := v.pods[cache.NewObjectName(n.ns, n.name).String()]; s != nil {
				i = s.idx
			}
			d.Changed = append(d.Changed, policy.PodChange{Namespace: n.ns, Name: n.name, Index: i})
		}
	}
	v.seq = seq
	if len(v.moved) > movedKept {
		v.moved = map[podName]struct{}{} // a cleared map keeps its size
	} else {
		clear(v.moved)
	}
	return seq, d
}

// movedKept is the most pods moved between two snapshots whose map the
// view clears and keeps: a larger one (the first listing moves every pod:
// 0.8 MB at 10,000 pods) goes.
const movedKept = 256

// namespaceList is every namespace object plus, as Build does,
// the namespaces of snapshot pods that have no object; sorted by name.
func (v *View) namespaceList() []policy.Namespace {
	if v.nsStale {
		v.nsStale = false
		v.nsList = v.BuildNamespaces(nil)
	}
	return v.nsList
}

// BuildNamespaces is the snapshot's namespace list for a pod slice that
// has, per namespace, delta[ns] more pods than the view's (see namespaceList).
func (v *View) BuildNamespaces(delta map[string]int) []policy.Namespace {
	out := make([]policy.Namespace, 0, len(v.namespaces))
	for _, ns := range v.namespaces {
		out = append(out, namespace(ns.Name, ns.Labels))
	}
	implicit := func(name string, n int) {
		if _, ok := v.namespaces[name]; !ok && n > 0 {
			out = append(out, namespace(name, nil))
		}
	}
	for name, n := range v.nsPods {
		implicit(name, n+delta[name])
	}
	for name, d := range delta {
		if _, counted := v.nsPods[name]; !counted {
			implicit(name, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// sortedObjs returns *list, first rebuilt from m in key order (see
// byKey) when *stale.
func sortedObjs[T named](m map[string]T, list *[]T, stale *bool) []T {
	if *stale {
		*stale = false
		*list = slices.SortedFunc(maps.Values(m), byKey)
	}
	return *list
}

// nodeLists returns the view's nodes sorted by name, and the same nodes
// as the snapshot's peer nodes. Node updates that change nothing peers see
// (a status heartbeat, a new pod CIDR) keep the peer slice as it was.
func (v *View) nodeLists() ([]*corev1.Node, []policy.PeerNode) {
	if v.nodeStale {
		nodes := sortedObjs(v.nodes, &v.nodeList, &v.nodeStale)
		if peers := peerNodes(nodes); !reflect.DeepEqual(peers, v.peerList) {
			v.peerList = peers
		}
	}
	return v.nodeList, v.peerList
}

// Objects returns what the reconcilers read: the view's nodes, sorted by
// name. The other kinds are left empty: no reconciler reads them, and
// listing them would cost what the view saves.
func (v *View) Objects() Objects {
	nodes, _ := v.nodeLists()
	return Objects{Nodes: nodes}
}

// Index returns the index of pod key in the pod slice of the last
// snapshot, or -1 when the snapshot leaves the pod out or the source has
// no such pod. It holds until the next apply or reset.
func (v *View) Index(key string) int {
	if s := v.pods[key]; s != nil {
		return s.idx
	}
	return -1
}

// Pod returns the source's pod key, whether or not the snapshot holds it.
func (v *View) Pod(key string) *Pod {
	if s := v.pods[key]; s != nil {
		return s.obj
	}
	return nil
}
