package controller

import (
	"net/netip"
	"slices"
	"sort"

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

// overlay returns s, the snapshot v built, with announced addresses
// applied: an announced pod gets its addresses even if the source has not
// seen them yet, and no other pod keeps an announced address (it was
// reused after a delete the source has not caught up with). It also
// reports which announcements the source has caught up with (it has the
// addresses, or has the pod finished), so the agent can
// forget them. Pods keep their places; s and v are not modified: when
// anns is not empty the result's pods are written into buf, reused when it
// is large enough, and the result has no Seq nor PodDelta (its pods are
// not the view's).
func overlay(s policy.Snapshot, v *snapshot.View, anns map[string]*announcement, buf []policy.Pod) (policy.Snapshot, []string) {
	if len(anns) == 0 {
		return s, nil
	}
	s.Seq, s.PodDelta = 0, nil
	owner := map[netip.Addr]bool{}
	byID := make(map[[2]string]*announcement, len(anns)) // no key to build per pod
	for _, a := range anns {
		for _, ip := range a.ips {
			owner[ip] = true
		}
		byID[[2]string{a.namespace, a.name}] = a
	}
	pods := buf[:0]
	if cap(buf) < len(s.Pods)+len(anns) {
		pods = make([]policy.Pod, 0, len(s.Pods)+len(anns)+len(s.Pods)/8)
	}
	delta := map[string]int{} // pods per namespace, relative to s
	seen := map[string]bool{}
	var done []string
	for _, p := range s.Pods {
		a := byID[[2]string{p.Namespace, p.Name}]
		switch {
		case a != nil:
			// p's addresses are its source pod's (see snapshot.ConvertPod).
			key := cache.NewObjectName(p.Namespace, p.Name).String()
			seen[key] = true
			if containsAll(p.IPs, a.ips) {
				done = append(done, key)
			} else {
				p.IPs = unmapped(a.ips)
			}
			pods = append(pods, p)
		case claimsAny(p.IPs, owner):
			delta[p.Namespace]--
		default:
			pods = append(pods, p)
		}
	}
	keys := make([]string, 0, len(anns))
	for key := range anns {
		keys = append(keys, key)
	}
	sort.Strings(keys) // a stable order for the pods appended
	for _, key := range keys {
		a := anns[key]
		if seen[key] {
			continue
		}
		base := v.Pod(key) // in the source, but left out of the snapshot
		if base != nil && hasAll(base, a.ips) {
			done = append(done, key) // the snapshot leaves it out for another reason
			continue
		}
		inView := base != nil
		if !inView {
			base = a.pod
		}
		if base == nil {
			continue
		}
		np, ok := snapshot.ConvertPod(withIPs(base, a.ips))
		switch {
		case ok:
			pods = append(pods, np)
			delta[np.Namespace]++
		case inView:
			// The source has the pod finished: it will not run with the
			// announced addresses again.
			done = append(done, key)
		}
	}
	s.Pods = pods
	for _, d := range delta {
		if d != 0 {
			s.Namespaces = v.BuildNamespaces(delta)
			break
		}
	}
	return s, done
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

func claimsAny(ips []netip.Addr, owner map[netip.Addr]bool) bool {
	for _, ip := range ips {
		if owner[ip] {
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
