package controller

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/controller/snapshot/snapshottest"
	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// overlayPolicies select pods of both namespaces and take pods of both
// as peers, so that a pod's addresses and labels show in the ruleset.
const overlayPolicies = `
metadata: {namespace: ns0, name: web}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: b}}
    - namespaceSelector: {}
      podSelector: {matchLabels: {app: c}}
---
metadata: {namespace: ns1, name: all}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - namespaceSelector: {}
      podSelector: {matchLabels: {app: b}}
  egress:
  - to:
    - podSelector: {matchLabels: {app: a}}
`

// overlayCluster is a random cluster for the overlay's differential test:
// pods on the local node n1 and on n2, with few addresses to share (so
// that announced addresses are often still held by a pod being
// deleted), and the plugin's announcements of n1's pods.
type overlayCluster struct {
	r     *rand.Rand
	pods  map[string]*snapshot.Pod // the source's, by key
	anns  map[string]*announcement
	names int // pods named so far
}

func (c *overlayCluster) ip() netip.Addr {
	return netip.AddrFrom4([4]byte{10, 244, byte(1 + c.r.IntN(2)), byte(1 + c.r.IntN(12))})
}

func (c *overlayCluster) labels() map[string]string {
	return map[string]string{"app": []string{"a", "b", "c"}[c.r.IntN(3)]}
}

// newPod returns a pod not in the source, or one of a name the source
// had (a StatefulSet's pod, recreated), without an address half the time.
func (c *overlayCluster) newPod() *snapshot.Pod {
	name := fmt.Sprint("p", c.r.IntN(c.names+1))
	if name == fmt.Sprint("p", c.names) {
		c.names++
	}
	var ips []string
	if c.r.IntN(2) == 0 {
		ips = []string{c.ip().String()}
	}
	p := snapshot.NewPod(fixtures.Pod(fmt.Sprint("ns", c.r.IntN(3)), name, fmt.Sprint("n", 1+c.r.IntN(2)), c.labels(), ips...))
	p.UID = types.UID(fmt.Sprint(name, "-", c.r.Int()))
	return p
}

// pick returns a random key of m, "" when m is empty.
func pick[T any](r *rand.Rand, m map[string]T) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return ""
	}
	slices.Sort(keys)
	return keys[r.IntN(len(keys))]
}

// change makes one random change to the source or the announcements
// and returns the source's changes and what it did.
func (c *overlayCluster) change(ch map[string]*snapshot.Pod) string {
	key := pick(c.r, c.pods)
	if key == "" {
		key = "none"
	}
	old := c.pods[key]
	var p *snapshot.Pod
	if old != nil {
		p = new(*old)
	}
	switch op := c.r.IntN(9); {
	case op == 0 || old == nil:
		p = c.newPod()
		key = p.Namespace + "/" + p.Name
	case op == 1:
		p.Labels = c.labels()
	case op == 2: // the source catches up, with the announced address or not
		if a := c.anns[key]; a != nil && c.r.IntN(4) > 0 {
			p.IPs = slices.Clone(a.ips)
		} else {
			p.IPs = []netip.Addr{c.ip()}
		}
	case op == 3:
		p = nil
	case op == 4:
		p.DeletionTimestamp = &metav1.Time{}
	case op == 5:
		p.Phase = corev1.PodSucceeded
	case op <= 7: // an announcement of a pod of n1, in the source or not
		if p.NodeName != "n1" || c.r.IntN(3) == 0 {
			p = c.newPod()
			p.NodeName, p.IPs = "n1", nil
			key = p.Namespace + "/" + p.Name
			c.anns[key] = &announcement{namespace: p.Namespace, name: p.Name, ips: []netip.Addr{c.ip()}, pod: p}
			return "announce " + key + " (not in the source)"
		}
		c.anns[key] = &announcement{namespace: p.Namespace, name: p.Name, ips: []netip.Addr{c.ip()}, pod: old}
		return "announce " + key
	default:
		if k := pick(c.r, c.anns); k != "" {
			delete(c.anns, k)
			return "forget " + k
		}
		return "nothing"
	}
	if p == nil {
		delete(c.pods, key)
	} else {
		c.pods[key] = p
	}
	ch[key] = p
	return fmt.Sprintf("op on %s", key)
}

// TestOverlayPodDeltaMatchesCompile runs random source changes and
// announcements through a view, an overlayer and one Compiler, as the
// agent's syncs do, and checks every ruleset against Compile of the same
// snapshot, every overlaid snapshot against the reference, every delta
// against the pods that really changed, and that the Compiler took every
// delta but the first snapshot's.
func TestOverlayPodDeltaMatchesCompile(t *testing.T) {
	policies := fixtures.Policies(t, overlayPolicies)
	nodes := []*corev1.Node{node("n1", []string{"10.244.1.0/24"}, "192.168.0.1"), node("n2", []string{"10.244.2.0/24"}, "192.168.0.2")}
	overlaid := 0
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			c := &overlayCluster{r: rand.New(rand.NewPCG(seed, 0)), pods: map[string]*snapshot.Pod{}, anns: map[string]*announcement{}}
			for range 20 {
				p := c.newPod()
				c.pods[p.Namespace+"/"+p.Name] = p
			}
			full := func() snapshot.Changes { // a listing of the source, as without informers
				return snapshot.Changes{Full: true, Objects: snapshot.Objects{Nodes: nodes, Namespaces: []*corev1.Namespace{fixtures.Namespace("ns0", nil)},
					Pods: slices.Collect(maps.Values(c.pods)), Policies: policies}}
			}
			v := snapshot.NewView()
			v.Apply(full())
			var o overlayer
			x := policy.NewCompiler()
			var prev policy.Snapshot
			used, takeable := 0, 0
			for step := 0; step < 300; step++ {
				var did []string
				if step > 0 {
					ch := map[string]*snapshot.Pod{}
					for range 1 + c.r.IntN(3) {
						did = append(did, c.change(ch))
					}
					if c.r.IntN(10) == 0 {
						v.Apply(full())
					} else {
						v.Apply(snapshot.Changes{Pods: ch})
					}
				}
				s, done := o.overlay(v.Snapshot("n1", nil), v, c.anns)
				at := fmt.Sprintf("step %d (%v)", step, did)
				if len(c.anns) > 0 {
					ref, _ := overlayObjects(full().Objects, c.anns)
					if g, w := snapshottest.Canonical(s), snapshottest.Canonical(snapshot.Build("n1", nil, ref)); !reflect.DeepEqual(g, w) {
						t.Fatalf("%s: overlay differs from the reference: %s", at, snapshottest.DescribeDiff(g, w))
					}
				}
				for _, key := range done {
					delete(c.anns, key)
				}
				checkDelta(t, at, prev, s)
				if s.Seq != prev.Seq && len(c.anns) > 0 {
					overlaid++
				}
				got, want := x.Compile(s), policy.Compile(s)
				if got.String() != want.String() {
					t.Fatalf("%s: Compiler differs from Compile:\n%s", at, textdiff.Lines(want.String(), got.String()))
				}
				if x.UsedPodDelta() {
					used++
				}
				if step > 0 && len(prev.Pods) > 0 {
					takeable++
				}
				prev = s
				prev.Pods = slices.Clone(s.Pods) // the view and the overlayer reuse theirs
			}
			if used != takeable || used == 0 {
				t.Errorf("the Compiler took %d deltas, want %d", used, takeable)
			}
		})
	}
	if overlaid == 0 {
		t.Errorf("no sync had announcements")
	}
}

// checkDelta fails the test unless s, which follows prev, has a Seq
// that is new and, when its PodDelta is relative to prev, a delta that
// lists every pod whose content differs.
func checkDelta(t *testing.T, at string, prev, s policy.Snapshot) {
	t.Helper()
	if s.Seq == 0 || s.Seq == prev.Seq {
		t.Fatalf("%s: Seq %d after %d", at, s.Seq, prev.Seq)
	}
	d := s.PodDelta
	if d == nil || d.Base != prev.Seq {
		return
	}
	listed := map[podName]bool{}
	for _, ch := range d.Changed {
		listed[podName{ch.Namespace, ch.Name}] = true
	}
	was := map[podName]policy.Pod{}
	for _, p := range prev.Pods {
		was[podName{p.Namespace, p.Name}] = p
	}
	for _, p := range s.Pods {
		n := podName{p.Namespace, p.Name}
		if old, ok := was[n]; (!ok || !reflect.DeepEqual(old, p)) && !listed[n] {
			t.Fatalf("%s: pod %v changed (%+v -> %+v) but the delta does not list it", at, n, old, p)
		}
		delete(was, n)
	}
	for n := range was {
		if !listed[n] {
			t.Fatalf("%s: pod %v went but the delta does not list it", at, n)
		}
	}
}
