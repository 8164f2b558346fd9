package snapshot

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestViewFollowsAReusedAddress moves a pod being deleted and the pod that
// reuses its address through the changes a source reports, one at a
// time: the view must hold what Build says after each.
func TestViewFollowsAReusedAddress(t *testing.T) {
	s, incr, full := newStore(), NewView(), NewView()
	steps := []struct {
		name string
		do   func()
		want []string
	}{
		{"old pod running", func() { s.putPod(pod("a", "old", "n1", map[string]string{"app": "old"}, "10.1.0.9")) }, []string{"old"}},
		{"old pod being deleted", func() { s.putPod(deleting(s.getPod("a", "old"))) }, []string{"old"}},
		{"new pod with the same address", func() {
			s.putPod(pod("a", "new", "n2", map[string]string{"app": "new"}, "10.1.0.9"))
		}, []string{"new"}},
		{"new pod relabelled", func() { s.putPod(withLabels(s.getPod("a", "new"), map[string]string{"app": "v2"})) }, []string{"new"}},
		{"old pod relabelled", func() { s.putPod(withLabels(s.getPod("a", "old"), map[string]string{"app": "v2"})) }, []string{"new"}},
		{"new pod on another address", func() {
			p := s.getPod("a", "new").DeepCopy()
			p.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.10"}}
			s.putPod(p)
		}, []string{"new", "old"}},
		{"new pod back on the address", func() {
			p := s.getPod("a", "new").DeepCopy()
			p.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.9"}}
			s.putPod(p)
		}, []string{"new"}},
		{"new pod being deleted too", func() { s.putPod(deleting(s.getPod("a", "new"))) }, []string{"new", "old"}},
		{"new pod running again (recreated)", func() {
			s.putPod(pod("a", "new", "n2", map[string]string{"app": "new"}, "10.1.0.9"))
		}, []string{"new"}},
		{"new pod deleted", func() { s.delPod("a", "new") }, []string{"old"}},
		{"old pod finished", func() { s.putPod(withPhase(s.getPod("a", "old"), corev1.PodFailed)) }, []string{}},
	}
	for _, st := range steps {
		st.do()
		if got := podNames(snapshotOf(t, st.name, s, incr, full)); !reflect.DeepEqual(got, st.want) {
			t.Errorf("%s: snapshot pods %v, want %v", st.name, got, st.want)
		}
	}
	if len(incr.live)+len(incr.dying) != 0 {
		t.Errorf("the view still indexes %d live and %d dying addresses with no pod left", len(incr.live), len(incr.dying))
	}
}
