package policy

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/weir-cni/weir/ruleset"
	corev1 "k8s.io/api/core/v1"
)

// This file holds the Compiler's own copy of every pod and keeps its
// indexes up to date as pods come, change and go: pods by namespace, by
// label, the local ones, the address families and named ports in use. A
// pod change re-evaluates only the cached selectors of its namespace
// against that one pod (reselect).

// podRec is the Compiler's own copy of one pod.
type podRec struct {
	// Pod's Labels, IPs and Ports are the snapshot's (podRec is its
	// labels.Labels): the source's pods with equal labels share one map
	// (snapshot.NewPod), and a copy would cost 88 bytes a pod.
	Pod
	// local is true for a pod of this node that is not hostNetwork: one
	// weir polices.
	local bool
	// gen is the last Compile whose snapshot held the pod (or, after a
	// PodDelta, the last that changed it).
	gen uint64
	// idx is the pod's place in Compiler.order.
	idx int
	// elems are a local pod's elements in the self sets and pod maps,
	// built once for its content (set clears them); rulesets share them.
	// Nil for the other pods, most of them.
	elems *localElems
}

// localElems are a local pod's elements in the self sets and pod maps.
type localElems struct {
	self []ruleset.Elem
	jump [2]jumpElems // per direction
}

// jumpElems are a pod's elements in a pod map: each of its addresses jumps
// to chain, the target of the selection sel (see selectionTarget), whose
// selection chain is selChain when chain is one.
type jumpElems struct {
	chain    string
	elems    []ruleset.Elem
	sel      []*policyState
	selChain *ruleset.Chain
}

// podID identifies a pod or a policy: namespace and name.
type podID struct{ ns, name string }

// set makes r a copy of p. It shares p's Labels, IPs and Ports: the
// snapshot's pods are not modified afterwards (see Compiler).
func (r *podRec) set(p *Pod) {
	r.Pod = *p
	r.elems = nil
}

// slab hands out the memory of many pod copies from one allocation (a
// full Compile copies every pod). Its zero value allocates one by one.
type slab struct {
	recs []podRec
}

func newSlab(pods []Pod) *slab {
	return &slab{recs: make([]podRec, len(pods))}
}

func (s *slab) rec() *podRec {
	if len(s.recs) == 0 {
		return &podRec{}
	}
	r := &s.recs[0]
	s.recs = s.recs[1:]
	return r
}

// Has, Get and Lookup make a podRec the labels.Labels of its pod.
func (r *podRec) Has(k string) bool {
	_, ok := r.Lookup(k)
	return ok
}

func (r *podRec) Get(k string) string {
	v, _ := r.Lookup(k)
	return v
}

func (r *podRec) Lookup(k string) (string, bool) {
	v, ok := r.Labels[k]
	return v, ok
}

// same tells whether p, of the same namespace and name, is what r holds.
func (r *podRec) same(p *Pod) bool {
	return r.Node == p.Node && r.HostNetwork == p.HostNetwork && maps.Equal(r.Labels, p.Labels) &&
		slices.Equal(r.IPs, p.IPs) && slices.Equal(r.Ports, p.Ports)
}

// addPod indexes a new pod.
func (x *Compiler) addPod(p *podRec) {
	pods := x.byNS[p.Namespace]
	if pods == nil {
		pods = map[*podRec]struct{}{}
		x.byNS[p.Namespace] = pods
		x.nsChanged[p.Namespace] = true
	}
	pods[p] = struct{}{}
	x.count(p, 1)
	x.touch(p.IPs)
	x.reselect(p, false, nil)
}

// removePod forgets a pod that left the snapshot.
func (x *Compiler) removePod(p *podRec) {
	wasPoliced := !p.HostNetwork
	x.count(p, -1)
	p.HostNetwork, p.Labels, p.local = true, nil, false // matches no selector any more
	x.touch(p.IPs)
	x.reselect(p, wasPoliced, p.IPs)
	delete(x.pods, podID{p.Namespace, p.Name})
	delete(x.byNS[p.Namespace], p)
	if len(x.byNS[p.Namespace]) == 0 {
		delete(x.byNS, p.Namespace)
		x.nsChanged[p.Namespace] = true
	}
}

// updatePod replaces the content of a known pod (same namespace and name).
// A local pod that stays local with the same addresses keeps its place
// in the local order.
func (x *Compiler) updatePod(p *podRec, to *Pod) {
	wasLocal, ips, orderStale := p.local, p.IPs, x.orderStale
	x.count(p, -1)
	wasPoliced := !p.HostNetwork
	p.set(to)
	p.local = p.Node == x.node.Name && !p.HostNetwork
	x.count(p, 1)
	x.touch(ips)
	x.touch(p.IPs)
	x.reselect(p, wasPoliced, ips)
	if wasLocal && p.local && slices.Equal(ips, p.IPs) {
		x.orderStale = orderStale
	}
}

// reselect re-evaluates the cached selectors of p's namespace against p
// (whose content just changed from addresses ips) and marks the policies
// of every result p is or was part of. Policies that use every pod are
// marked when p is or was a possible peer.
func (x *Compiler) reselect(p *podRec, wasPoliced bool, ips []netip.Addr) {
	x.podsChanged = true
	if wasPoliced || !p.HostNetwork {
		x.markUsers(x.allUsers)
	}
	for e := range x.entriesByNS[p.Namespace] {
		_, was := e.members[p]
		now := e.matches(p)
		switch {
		case now && !was:
			e.join(p)
		case was && !now:
			e.leave(p, ips)
		case was:
			e.readdress(p, ips)
		}
		if was || now {
			if e.startGen != x.gen { // its first change in this Compile
				e.startGen, e.startVer = x.gen, e.ver
			}
			e.ver++
			x.markUsers(e.users)
		}
	}
}

// count adds (d = 1) or removes (d = -1) p's contribution to the address
// family and named-port counters and to the local pods.
func (x *Compiler) count(p *podRec, d int) {
	for _, ip := range p.IPs {
		if ip.Unmap().Is4() {
			x.famPods[0] += d
		} else {
			x.famPods[1] += d
		}
	}
	for _, cp := range p.Ports {
		proto, err := protoNumber((*corev1.Protocol)(&cp.Protocol))
		if cp.Protocol == "" {
			proto, err = ruleset.ProtoTCP, nil
		}
		if err != nil {
			continue
		}
		np := namedPort{proto, cp.Name}
		n := x.ports[np] // one lookup: counted in place
		if n == nil {
			n = new(int)
			x.ports[np] = n
		}
		if (*n == 0) != (*n+d == 0) {
			x.portsChanged = true
		}
		if *n += d; *n == 0 {
			delete(x.ports, np)
		}
	}
	if !p.HostNetwork { // no selector matches it
		x.index(p, d)
	}
	if p.local {
		x.countLocal(p, d)
	}
}

// index adds (d = 1) or removes (d = -1) p in the label index.
func (x *Compiler) index(p *podRec, d int) {
	for k, v := range p.Labels {
		lk := labelKey{p.Namespace, k, v}
		pods := x.labelIdx[lk] // one lookup: the key hashes three strings
		if d > 0 {
			if pods == nil {
				pods = map[*podRec]struct{}{}
				x.labelIdx[lk] = pods
			}
			pods[p] = struct{}{}
		} else if delete(pods, p); len(pods) == 0 {
			delete(x.labelIdx, lk)
		}
	}
}

func (x *Compiler) countLocal(p *podRec, d int) {
	x.localStale, x.orderStale = true, true
	if d < 0 {
		delete(x.local, p)
		if delete(x.localByNS[p.Namespace], p); len(x.localByNS[p.Namespace]) == 0 {
			delete(x.localByNS, p.Namespace)
		}
		return
	}
	x.local[p] = struct{}{}
	if x.localByNS[p.Namespace] == nil {
		x.localByNS[p.Namespace] = map[*podRec]struct{}{}
	}
	x.localByNS[p.Namespace][p] = struct{}{}
}

// localElems returns the element cache of a local pod, made on first use.
func (r *podRec) localElems() *localElems {
	if r.elems == nil {
		r.elems = &localElems{}
	}
	return r.elems
}
