package controller

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
)

// announcement is a pod the plugin told the agent about before the API
// server knew the pod's addresses.
type announcement struct {
	namespace, name string
	ips             []netip.Addr
	// pod is the object the source had (or fetched) when announced.
	pod *corev1.Pod
}

// overlay returns objs with announced addresses applied: an announced pod
// gets its addresses even if the source has not seen them yet, and no other
// pod keeps an announced address (it was reused after a delete the source
// has not caught up with). It also reports which announcements the source
// has caught up with, so the agent can forget them. objs is not modified.
func overlay(objs Objects, anns map[string]*announcement) (Objects, []string) {
	if len(anns) == 0 {
		return objs, nil
	}
	owner := map[netip.Addr]string{}
	for key, a := range anns {
		for _, ip := range a.ips {
			owner[ip] = key
		}
	}
	out := objs
	out.Pods = make([]*corev1.Pod, 0, len(objs.Pods)+len(anns))
	seen := map[string]bool{}
	var done []string
	for _, p := range objs.Pods {
		key := p.Namespace + "/" + p.Name
		a, announced := anns[key]
		if announced {
			seen[key] = true
			if hasAll(p, a.ips) {
				done = append(done, key)
				out.Pods = append(out.Pods, p)
				continue
			}
			out.Pods = append(out.Pods, withIPs(p, a.ips))
			continue
		}
		if stale := claimsAny(p, owner); stale {
			continue
		}
		out.Pods = append(out.Pods, p)
	}
	for key, a := range anns {
		if !seen[key] && a.pod != nil {
			out.Pods = append(out.Pods, withIPs(a.pod, a.ips))
		}
	}
	return out, done
}

func podIPs(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			out = append(out, a.Unmap())
		}
	}
	if len(out) == 0 && p.Status.PodIP != "" {
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

func hasAll(p *corev1.Pod, ips []netip.Addr) bool {
	have := podIPs(p)
	for _, ip := range ips {
		found := false
		for _, h := range have {
			found = found || h == ip
		}
		if !found {
			return false
		}
	}
	return true
}

func claimsAny(p *corev1.Pod, owner map[netip.Addr]string) bool {
	for _, ip := range podIPs(p) {
		if _, ok := owner[ip]; ok {
			return true
		}
	}
	return false
}

// withIPs returns a copy of p whose status carries ips and phase Running.
func withIPs(p *corev1.Pod, ips []netip.Addr) *corev1.Pod {
	c := p.DeepCopy()
	c.Status.PodIPs = nil
	for _, ip := range ips {
		c.Status.PodIPs = append(c.Status.PodIPs, corev1.PodIP{IP: ip.String()})
	}
	c.Status.PodIP = ""
	if len(ips) > 0 {
		c.Status.PodIP = ips[0].String()
	}
	if c.Status.Phase == "" || c.Status.Phase == corev1.PodPending {
		c.Status.Phase = corev1.PodRunning
	}
	return c
}

// findPod returns the pod ns/name from objs.
func findPod(objs Objects, ns, name string) *corev1.Pod {
	for _, p := range objs.Pods {
		if p.Namespace == ns && p.Name == name {
			return p
		}
	}
	return nil
}
