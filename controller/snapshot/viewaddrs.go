package snapshot

import (
	"net/netip"
	"slices"

	"github.com/weir-cni/weir/policy"
)

// This file keeps the view's index of pod addresses, which decides the
// pods being deleted that the snapshot leaves out because a pod that is
// not being deleted holds one of their addresses (see Build,
// Yields and Claims). A change re-examines only the pods being deleted at
// the addresses whose holders changed.

// reindex records the addresses of np, the pod p of s, in live or dying
// in place of what s had there, and reports whether the snapshot holds
// it: false for a pod that yields an address some pod claims.
func (v *View) reindex(s *podSlot, np policy.Pod, p *Pod) bool {
	if s.addrs != nil && (s.dying && Yields(p) || !s.dying && Claims(p)) && slices.Equal(s.addrs, np.IPs) {
		s.addrs = np.IPs // the usual update: same addresses, same kind
		return !s.dying || !v.outLived(s)
	}
	v.unindex(s)
	switch {
	case Claims(p):
		s.addrs, s.dying = np.IPs, false
		for _, ip := range np.IPs {
			if v.live[ip]++; v.live[ip] == 1 {
				v.markRecheck(ip)
			}
		}
	case Yields(p):
		s.addrs, s.dying = np.IPs, true
		for _, ip := range np.IPs {
			if v.dying[ip] == nil {
				v.dying[ip] = map[*podSlot]struct{}{}
			}
			v.dying[ip][s] = struct{}{}
		}
		return !v.outLived(s)
	}
	return true
}

// unindex takes s's addresses out of live or dying.
func (v *View) unindex(s *podSlot) {
	for _, ip := range s.addrs {
		if s.dying {
			if delete(v.dying[ip], s); len(v.dying[ip]) == 0 {
				delete(v.dying, ip)
			}
			continue
		}
		if v.live[ip]--; v.live[ip] <= 0 {
			delete(v.live, ip)
			v.markRecheck(ip)
		}
	}
	s.addrs, s.dying = nil, false
}

// outLived reports whether a pod that claims its address holds one of
// the addresses of s, a pod of dying.
func (v *View) outLived(s *podSlot) bool {
	for _, ip := range s.addrs {
		if v.live[ip] > 0 {
			return true
		}
	}
	return false
}

func (v *View) markRecheck(ip netip.Addr) {
	if _, ok := v.dying[ip]; ok {
		v.recheck = append(v.recheck, ip)
	}
}

// recheckDying puts in the snapshot, or takes out, the pods of dying at
// the addresses recheck lists, as their addresses are live or not.
func (v *View) recheckDying() {
	for _, ip := range v.recheck {
		for s := range v.dying[ip] {
			switch out := v.outLived(s); {
			case out && s.idx >= 0:
				v.drop(s)
			case !out && s.idx < 0:
				if np, ok := ConvertPod(s.obj); ok {
					v.place(s, np)
				}
			}
		}
	}
	v.recheck = v.recheck[:0]
}
