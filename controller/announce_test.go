package controller

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/controller/snapshot/snapshottest"
	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// overlayObjects is the definition overlay must match, on source objects
// rather than on a snapshot: an announced pod gets its addresses, no other
// pod keeps an announced address, an announced pod the source does not
// have is added from its announcement. An announcement is done when the
// source has its addresses or has the pod finished. A pod that keeps its
// source addresses (not announced, or done) and that the source's
// snapshot leaves out for a pod not being deleted holding one of its
// addresses stays out: that address was reused after the pod was torn
// down, whoever holds it once announcements apply. Build of the result
// decides the rest (announced pods being deleted give up their announced
// addresses to announced pods that are not).
func overlayObjects(objs snapshot.Objects, anns map[string]*announcement) (snapshot.Objects, map[string]bool) {
	owner := map[netip.Addr]bool{}
	for _, a := range anns {
		for _, ip := range a.ips {
			owner[ip] = true
		}
	}
	claimed := map[netip.Addr]bool{} // in the source
	for _, p := range objs.Pods {
		if _, ok := snapshot.ConvertPod(p); ok && snapshot.Claims(p) {
			for _, ip := range p.IPs {
				claimed[ip] = true
			}
		}
	}
	outLived := func(p *snapshot.Pod) bool {
		return snapshot.Yields(p) && slices.ContainsFunc(p.IPs, func(ip netip.Addr) bool { return claimed[ip] })
	}
	out := objs
	out.Pods = nil
	seen, done := map[string]bool{}, map[string]bool{}
	for _, p := range objs.Pods {
		key := p.Namespace + "/" + p.Name
		if a, ok := anns[key]; ok {
			seen[key] = true
			switch _, runs := snapshot.ConvertPod(withIPs(p, a.ips)); {
			case hasAll(p, a.ips) || !runs:
				done[key] = true
				if !outLived(p) {
					out.Pods = append(out.Pods, p)
				}
			default:
				out.Pods = append(out.Pods, withIPs(p, a.ips))
			}
			continue
		}
		if !outLived(p) && !slices.ContainsFunc(p.IPs, func(ip netip.Addr) bool { return owner[ip] }) {
			out.Pods = append(out.Pods, p)
		}
	}
	for key, a := range anns {
		if !seen[key] && a.pod != nil {
			out.Pods = append(out.Pods, withIPs(a.pod, a.ips))
		}
	}
	return out, done
}

func TestOverlay(t *testing.T) {
	ip := netip.MustParseAddr("10.244.1.9")
	now := metav1.Now()
	deleting := pod("ns1", "new", "n1", nil, "10.244.1.9")
	deleting.DeletionTimestamp = &now
	deletingNoIP := pod("ns1", "new", "n1", nil)
	deletingNoIP.DeletionTimestamp = &now
	finishedNoIP := pod("ns1", "new", "n1", nil)
	finishedNoIP.Status.Phase = corev1.PodSucceeded
	deletingOld := pod("ns1", "old", "n1", nil, "10.244.1.5")
	deletingOld.DeletionTimestamp = &now
	deletingOld9 := pod("ns1", "old", "n1", nil, "10.244.1.9")
	deletingOld9.DeletionTimestamp = &now
	ann := func(ns string) map[string]*announcement {
		return map[string]*announcement{ns + "/new": {namespace: ns, name: "new", ips: []netip.Addr{ip},
			pod: snapshot.NewPod(pod(ns, "new", "n1", map[string]string{"v": "2"}))}}
	}
	// Two announcements of 10.244.1.9: of new, and of old, being deleted.
	twice := ann("ns1")
	twice["ns1/old"] = &announcement{namespace: "ns1", name: "old", ips: []netip.Addr{ip}, pod: snapshot.NewPod(deletingOld)}
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns1"}}
	cases := []struct {
		name     string
		objs     snapshot.Objects
		anns     map[string]*announcement
		wantPods map[string]string // name -> first IP ("" none)
		wantDone bool
	}{
		{"cache has the pod without IP yet", snapshot.Objects{Pods: snapshot.NewPods(pod("ns1", "new", "n1", nil))}, ann("ns1"),
			map[string]string{"new": "10.244.1.9"}, false},
		{"cache has the pod with an older address", snapshot.Objects{Pods: snapshot.NewPods(pod("ns1", "new", "n1", map[string]string{"v": "1"}, "10.244.1.5"))},
			ann("ns1"), map[string]string{"new": "10.244.1.9"}, false},
		{"cache does not have the pod at all", snapshot.Objects{}, ann("ns1"), map[string]string{"new": "10.244.1.9"}, false},
		{"reused address drops the stale pod", snapshot.Objects{Pods: snapshot.NewPods(pod("ns1", "old", "n1", nil, "10.244.1.9"))}, ann("ns1"),
			map[string]string{"new": "10.244.1.9"}, false},
		{"stale pod dropped from a namespace that has no object", snapshot.Objects{Namespaces: []*corev1.Namespace{nsObj},
			Pods: snapshot.NewPods(pod("ns2", "old", "n1", nil, "10.244.1.9"))}, ann("ns1"),
			map[string]string{"new": "10.244.1.9"}, false},
		{"announced pod in a namespace that has no object", snapshot.Objects{Namespaces: []*corev1.Namespace{nsObj}}, ann("ns3"),
			map[string]string{"new": "10.244.1.9"}, false},
		{"cache caught up", snapshot.Objects{Pods: snapshot.NewPods(pod("ns1", "new", "n1", nil, "10.244.1.9"))}, ann("ns1"),
			map[string]string{"new": "10.244.1.9"}, true},
		{"cache caught up with a pod being deleted, which keeps its address", snapshot.Objects{Pods: snapshot.NewPods(deleting)}, ann("ns1"),
			map[string]string{"new": "10.244.1.9"}, true},
		{"pod being deleted before its IP was seen runs with the announced one", snapshot.Objects{Pods: snapshot.NewPods(deletingNoIP)}, ann("ns1"),
			map[string]string{"new": "10.244.1.9"}, false},
		{"pod finished before its IP was seen", snapshot.Objects{Pods: snapshot.NewPods(finishedNoIP)}, ann("ns1"),
			map[string]string{}, true},
		{"pod being deleted stays out when the pod that took its address is announced at another", snapshot.Objects{
			Pods: snapshot.NewPods(deletingOld, pod("ns1", "new", "n1", map[string]string{"v": "1"}, "10.244.1.5"))}, ann("ns1"),
			map[string]string{"new": "10.244.1.9"}, false},
		{"address announced twice goes to the pod not being deleted", snapshot.Objects{Pods: snapshot.NewPods(deletingOld)}, twice,
			map[string]string{"new": "10.244.1.9"}, false},
		{"address announced twice, the pod being deleted in the snapshot with it", snapshot.Objects{
			Pods: snapshot.NewPods(deletingOld9)}, twice, map[string]string{"new": "10.244.1.9"}, true},
		{"no announcements", snapshot.Objects{Pods: snapshot.NewPods(pod("ns1", "old", "n1", nil, "10.244.1.9"))}, nil,
			map[string]string{"old": "10.244.1.9"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := snapshot.NewView()
			v.Apply(snapshot.Changes{Full: true, Objects: tc.objs})
			base := v.Snapshot("n1", nil)
			before := fmt.Sprint(base.Pods)
			out, done, _, _ := overlay(base, v, tc.anns, nil)
			if fmt.Sprint(v.Snapshot("n1", nil).Pods) != before {
				t.Errorf("overlay modified the view's pods")
			}
			got := map[string]string{}
			for _, p := range out.Pods {
				got[p.Name] = ""
				if len(p.IPs) > 0 {
					got[p.Name] = p.IPs[0].String()
				}
			}
			if !reflect.DeepEqual(got, tc.wantPods) {
				t.Errorf("pods = %v, want %v", got, tc.wantPods)
			}
			if (len(done) > 0) != tc.wantDone {
				t.Errorf("done = %v, want %v", done, tc.wantDone)
			}
			if len(tc.anns) > 0 && (out.Seq != 0 || out.PodDelta != nil) {
				t.Errorf("overlaid pods keep the view's seq %d and delta %+v", out.Seq, out.PodDelta)
			}
			// The same as overlaying the source objects and converting them all.
			ref, refDone := overlayObjects(tc.objs, tc.anns)
			want := snapshottest.Canonical(snapshot.Build("n1", nil, ref))
			if g := snapshottest.Canonical(out); !reflect.DeepEqual(g, want) {
				t.Errorf("overlay differs from the reference: %s", snapshottest.DescribeDiff(g, want))
			}
			if len(done) != len(refDone) {
				t.Errorf("done = %v, reference %v", done, refDone)
			}
			// A reused buffer holding another snapshot's pods gives the same.
			buf := append(make([]policy.Pod, 0, 16), policy.Pod{Namespace: "junk", Name: "junk"})
			if again, _, _, _ := overlay(base, v, tc.anns, buf); !reflect.DeepEqual(snapshottest.Canonical(again), snapshottest.Canonical(out)) {
				t.Errorf("overlay into a used buffer = %+v, want %+v", again.Pods, out.Pods)
			}
		})
	}
}

// TestOverlayKeepsPodsWhenNoneChange checks that announcements that change
// no pod (the source caught up with them) give the snapshot's own pods,
// not a copy, and no changed pods: the overlayer then returns the view's
// snapshot and keeps its buffer.
func TestOverlayKeepsPodsWhenNoneChange(t *testing.T) {
	v := snapshot.NewView()
	v.Apply(snapshot.Changes{Full: true, Objects: snapshot.Objects{Pods: snapshot.NewPods(
		pod("ns1", "new", "n1", nil, "10.244.1.9"), pod("ns1", "other", "n1", nil, "10.244.1.8"))}})
	base := v.Snapshot("n1", nil)
	anns := map[string]*announcement{"ns1/new": {namespace: "ns1", name: "new", ips: []netip.Addr{netip.MustParseAddr("10.244.1.9")}}}
	out, done, over, dropped := overlay(base, v, anns, nil)
	if len(out.Pods) != len(base.Pods) || &out.Pods[0] != &base.Pods[0] {
		t.Errorf("overlay copied the pods (%d of %d)", len(out.Pods), len(base.Pods))
	}
	if len(over) > 0 || len(dropped) > 0 || !reflect.DeepEqual(done, []string{"ns1/new"}) {
		t.Errorf("over %v, dropped %v, done %v; want none, none, [ns1/new]", over, dropped, done)
	}
	var o overlayer
	if s, _ := o.overlay(base, v, anns); s.Seq != base.Seq || o.buf != nil {
		t.Errorf("overlayer gave Seq %d for %d and kept buffer of %d pods", s.Seq, base.Seq, len(o.buf))
	}
}

// An addrSet finds a v4-mapped address as the IPv4 address it keeps,
// small or large.
func TestAddrSetAnyOfUnmaps(t *testing.T) {
	for _, n := range []int{1, maxFewAddrs + 1} {
		var s addrSet
		for i := range n {
			s.add([]netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})})
		}
		if mapped := netip.MustParseAddr("::ffff:10.0.0.1"); !s.anyOf([]netip.Addr{mapped}) {
			t.Errorf("%d addresses: anyOf(%v) = false, want true", n, mapped)
		}
	}
}
