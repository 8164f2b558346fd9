package controller

import (
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// announcement is a pod the plugin told the agent about before the API
// server knew the pod's addresses.
type announcement struct {
	namespace, name string
	ips             []netip.Addr
	// pod is the object the source had (or fetched) when announced.
	pod *snapshot.Pod
}

// overlayer overlays announcements on the view's snapshots (see overlay)
// and numbers what it returns so that a Compiler given every snapshot it
// returns, overlaid or not, takes each one's PodDelta: the pods the view's
// delta lists, plus those the overlay changed in the last snapshot
// returned and in this one.
type overlayer struct {
	buf []policy.Pod // pods of the last overlaid snapshot
	// last is the Seq of the last snapshot returned, viewSeq the Seq of
	// the view's snapshot it was made from, and over the pods where the
	// two may differ (none when they are the same snapshot).
	last, viewSeq uint64
	over          []podName
}

// podName is a pod's namespace and name.
type podName struct{ ns, name string }

func (n podName) key() string { return cache.NewObjectName(n.ns, n.name).String() }

// overlay returns s, the last snapshot v built, with anns applied as the
// function overlay does, and the announcements the source caught up with.
// The result has s's pods and Seq when the announcements change none of
// its pods; else it has a new Seq and its pods are o's buffer, which the
// next call overwrites. Its PodDelta is relative to the last snapshot o returned,
// or nil when v's delta does not follow the snapshot that one was made
// from.
func (o *overlayer) overlay(s policy.Snapshot, v *snapshot.View, anns map[string]*announcement) (policy.Snapshot, []string) {
	viewSeq, vd := s.Seq, s.PodDelta
	chained := vd != nil && o.viewSeq != 0 && vd.Base == o.viewSeq
	out, done := s, []string(nil)
	var over map[podName]int
	var dropped []int
	if len(anns) > 0 {
		var ov policy.Snapshot
		ov, done, over, dropped = overlay(s, v, anns, o.buf)
		if len(over) > 0 { // else ov's pods are s's, not o.buf
			o.buf = ov.Pods
			out = ov
			out.Seq = snapshot.NewSeq()
		}
	}
	if o.last != o.viewSeq || len(over) > 0 { // else s and its delta stand
		out.PodDelta = nil
		if chained {
			out.PodDelta = &policy.PodDelta{Base: o.last, Changed: o.changes(vd, v, over, dropped)}
		}
	}
	o.last, o.viewSeq = out.Seq, viewSeq
	o.over = o.over[:0]
	for n := range over {
		o.over = append(o.over, n)
	}
	return out, done
}

// changes lists the pods that may differ between the last snapshot
// returned and the one being returned, made from the view's snapshot whose
// delta is vd and overlaid with over (see overlay): vd's pods, the pods
// the last overlay changed and those this one does, at their indexes in
// the new pod slice.
func (o *overlayer) changes(vd *policy.PodDelta, v *snapshot.View, over map[podName]int, dropped []int) []policy.PodChange {
	at := func(i int) int { // index in the view's pods -> in the overlaid ones
		if i < 0 {
			return -1
		}
		return i - sort.SearchInts(dropped, i) // no pod at i is dropped: over lists those
	}
	idx := make(map[podName]int, len(vd.Changed)+len(o.over)+len(over))
	for _, c := range vd.Changed {
		idx[podName{c.Namespace, c.Name}] = at(c.Index)
	}
	for _, n := range o.over {
		if _, ok := idx[n]; !ok {
			idx[n] = at(v.Index(n.key()))
		}
	}
	maps.Copy(idx, over)
	changed := make([]policy.PodChange, 0, len(idx))
	for n, i := range idx {
		changed = append(changed, policy.PodChange{Namespace: n.ns, Name: n.name, Index: i})
	}
	return changed
}

// overlay returns s, the last snapshot v built, with announced addresses
// applied: an announced pod gets its addresses even if the source has not
// seen them yet, and no other pod keeps an announced address (it was
// reused after a delete the source has not caught up with). Among the
// announced pods, one being deleted gives up its announced addresses to
// one that is not (see snapshot.Yields): the snapshot leaves it out. A pod
// the source does not announce keeps the snapshot's verdict on its own
// addresses: a pod being deleted that s leaves out because a pod that is
// not being deleted holds one of its addresses stays out, even when that
// pod is announced at other addresses (the address was reused after the
// pod being deleted was torn down, whoever holds it now).
//
// It also reports which announcements the source has caught up with (it
// has the addresses, or has the pod finished), so the agent can forget
// them, the pods whose content may differ from s's with their indexes in
// the result (-1 for a pod dropped; none when the announcements change no
// pod), and the indexes in s of the pods dropped, in order. Pods keep
// their order; s and v are not modified: when a pod changes, the result's
// pods are written into buf, reused when it is large enough; else they
// are s's. The result has no Seq nor PodDelta (its pods are not the
// view's; see overlayer). Beyond the copy of the pod slice when a pod
// changes, it reads every pod's addresses once and looks each announced
// pod up in v once by name (an Index and a Pod read).
func overlay(s policy.Snapshot, v *snapshot.View, anns map[string]*announcement, buf []policy.Pod) (_ policy.Snapshot, done []string, over map[podName]int, dropped []int) {
	s.Seq, s.PodDelta = 0, nil
	var owned, claimed addrSet // announced addresses; those of announced pods that claim them
	all := make([]announced, 0, len(anns))
	for key, a := range anns {
		owned.add(a.ips)
		e := announced{key: key, a: a, i: v.Index(key), obj: v.Pod(key)}
		if e.inView = e.obj != nil; !e.inView {
			e.obj = a.pod
		}
		if e.obj != nil && claimsAnnounced(e.obj) {
			claimed.add(a.ips)
		}
		all = append(all, e)
	}
	held := make(map[int]*announced, len(all)) // announced pods of s, by index
	var missing []*announced                   // announced pods s leaves out
	for k := range all {
		if e := &all[k]; e.i >= 0 {
			held[e.i] = e
		} else {
			missing = append(missing, e)
		}
	}
	for i := range s.Pods {
		if owned.anyOf(s.Pods[i].IPs) && held[i] == nil {
			dropped = append(dropped, i)
		}
	}
	outvoted := func(e *announced) bool { return snapshot.Yields(e.obj) && claimed.anyOf(e.a.ips) }
	var readdressed []*announced
	for i, e := range held {
		p := &s.Pods[i]
		// p's addresses are its source pod's (see snapshot.ConvertPod).
		has := containsAll(p.IPs, e.a.ips)
		if has {
			done = append(done, e.key)
		}
		switch {
		case outvoted(e):
			dropped = append(dropped, i)
		case !has:
			readdressed = append(readdressed, e)
		}
	}
	slices.Sort(dropped)
	added := addedPods(missing, outvoted, &done)
	if len(dropped) == 0 && len(readdressed) == 0 && len(added) == 0 {
		return s, done, nil, nil
	}
	pods := buf[:0]
	if cap(buf) < len(s.Pods)+len(added) {
		pods = make([]policy.Pod, 0, len(s.Pods)+len(added)+len(s.Pods)/8)
	}
	over = make(map[podName]int, len(dropped)+len(readdressed)+len(added))
	delta := map[string]int{} // pods per namespace, relative to s
	from := 0
	for _, i := range dropped {
		p := &s.Pods[i]
		delta[p.Namespace]--
		over[podName{p.Namespace, p.Name}] = -1
		pods = append(pods, s.Pods[from:i]...)
		from = i + 1
	}
	pods = append(pods, s.Pods[from:]...)
	for _, e := range readdressed {
		j := e.i - sort.SearchInts(dropped, e.i)
		p := &pods[j]
		p.IPs = unmapped(e.a.ips)
		over[podName{p.Namespace, p.Name}] = j
	}
	for _, np := range added {
		over[podName{np.Namespace, np.Name}] = len(pods)
		pods = append(pods, np)
		delta[np.Namespace]++
	}
	s.Pods = pods
	for _, d := range delta {
		if d != 0 {
			s.Namespaces = v.BuildNamespaces(delta)
			break
		}
	}
	return s, done, over, dropped
}

// announced is an announcement as overlay finds it: its key, its pod's
// index in the snapshot (-1 when the snapshot leaves the pod out) and its
// pod, the source's (inView) or else the announcement's (nil when neither
// has it).
type announced struct {
	key    string
	a      *announcement
	i      int
	obj    *snapshot.Pod
	inView bool
}

// addedPods returns the pods overlay appends for the announced pods the
// snapshot leaves out, ordered by key, and adds to done the announcements
// the source has caught up with: the source has the pod with its
// addresses (the snapshot leaves it out for another reason) or finished.
// A pod outvoted for its announced addresses is not added.
func addedPods(missing []*announced, outvoted func(*announced) bool, done *[]string) []policy.Pod {
	slices.SortFunc(missing, func(a, b *announced) int { return strings.Compare(a.key, b.key) })
	var added []policy.Pod
	for _, e := range missing {
		switch {
		case e.obj == nil:
		case e.inView && hasAll(e.obj, e.a.ips):
			*done = append(*done, e.key)
		default:
			np, ok := snapshot.ConvertPod(withIPs(e.obj, e.a.ips))
			switch {
			case ok && !outvoted(e):
				added = append(added, np)
			case !ok && e.inView:
				// The source has the pod finished: it will not run with
				// the announced addresses again.
				*done = append(*done, e.key)
			}
		}
	}
	return added
}

// claimsAnnounced reports whether p, given its announced addresses, runs
// with them and claims them (see snapshot.Claims): it is not finished nor
// being deleted.
func claimsAnnounced(p *snapshot.Pod) bool {
	return snapshot.Claims(p) && p.Phase != corev1.PodSucceeded && p.Phase != corev1.PodFailed
}

func hasAll(p *snapshot.Pod, ips []netip.Addr) bool {
	return containsAll(p.IPs, ips)
}

func containsAll(have, want []netip.Addr) bool {
	for _, ip := range want {
		if !slices.Contains(have, ip) {
			return false
		}
	}
	return true
}

// unmapped returns a copy of ips as snapshot.ConvertPod would give them.
func unmapped(ips []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, len(ips))
	for i, ip := range ips {
		out[i] = ip.Unmap()
	}
	return out
}

// addrSet is the set of announced addresses, unmapped: a slice while it
// is small (overlay checks every pod against it), a map beyond.
type addrSet struct {
	few  []netip.Addr
	many map[netip.Addr]bool
}

// maxFewAddrs is the most addresses an addrSet keeps in its slice.
const maxFewAddrs = 8

func (s *addrSet) add(ips []netip.Addr) {
	for _, ip := range ips {
		ip = ip.Unmap()
		switch {
		case s.many != nil:
			s.many[ip] = true
		case slices.Contains(s.few, ip):
		case len(s.few) < maxFewAddrs:
			s.few = append(s.few, ip)
		default:
			s.many = map[netip.Addr]bool{ip: true}
			for _, a := range s.few {
				s.many[a] = true
			}
		}
	}
}

// anyOf tells whether s holds one of ips (unmapped, as add keeps them).
func (s *addrSet) anyOf(ips []netip.Addr) bool {
	for _, ip := range ips {
		ip = ip.Unmap()
		if s.many != nil && s.many[ip] || s.many == nil && slices.Contains(s.few, ip) {
			return true
		}
	}
	return false
}

// withIPs returns a copy of p that has ips and phase Running.
func withIPs(p *snapshot.Pod, ips []netip.Addr) *snapshot.Pod {
	c := *p
	c.IPs = unmapped(ips)
	if c.Phase == "" || c.Phase == corev1.PodPending {
		c.Phase = corev1.PodRunning
	}
	return &c
}

// findPod returns the pod ns/name from objs.
func findPod(objs snapshot.Objects, ns, name string) *snapshot.Pod {
	for _, p := range objs.Pods {
		if p.Namespace == ns && p.Name == name {
			return p
		}
	}
	return nil
}
