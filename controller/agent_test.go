package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/nft"
)

type memSource struct {
	mu   sync.Mutex
	objs Objects
	err  error
	kick func()
}

func (m *memSource) Objects() (Objects, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.objs, m.err
}

func (m *memSource) Run(ctx context.Context, kick func()) error {
	m.mu.Lock()
	m.kick = kick
	m.mu.Unlock()
	kick()
	<-ctx.Done()
	return nil
}

type recApplier struct {
	mu      sync.Mutex
	applied []nft.Ruleset
	fail    error
	gate    chan struct{} // if set, Apply waits on it
}

func (r *recApplier) Apply(ctx context.Context, rs nft.Ruleset) error {
	if r.gate != nil {
		<-r.gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.applied = append(r.applied, rs)
	return nil
}

func (r *recApplier) last() (nft.Ruleset, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.applied) == 0 {
		return nft.Ruleset{}, 0
	}
	return r.applied[len(r.applied)-1], len(r.applied)
}

func pod(ns, name, node string, labels map[string]string, ips ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Spec: corev1.PodSpec{NodeName: node}}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	return p
}

func startAgent(t *testing.T, src Source, app Applier) (*Agent, context.CancelFunc) {
	t.Helper()
	a := &Agent{Node: "n1", Source: src, Applier: app, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return a, cancel
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAnnounceReturnsOnlyAfterApply(t *testing.T) {
	src := &memSource{objs: Objects{Pods: []*corev1.Pod{pod("ns1", "web", "n1", map[string]string{"app": "web"})}}}
	app := &recApplier{}
	a, _ := startAgent(t, src, app)
	waitFor(t, "first sync", func() bool { _, n := app.last(); return n == 1 })

	app.gate = make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.Announce(context.Background(), "ns1", "web", []netip.Addr{netip.MustParseAddr("10.244.1.9")})
	}()
	select {
	case err := <-done:
		t.Fatalf("Announce returned (%v) before the ruleset was applied", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(app.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rs, _ := app.last()
	snapHas := false
	for _, p := range a.snap.Pods {
		snapHas = snapHas || (p.Name == "web" && len(p.IPs) == 1 && p.IPs[0] == netip.MustParseAddr("10.244.1.9"))
	}
	if !snapHas {
		t.Errorf("announced address not in the applied snapshot: %+v", a.snap.Pods)
	}
	if rs.String() == "" {
		t.Error("empty ruleset applied")
	}
}

func TestAnnounceUnknownPodFails(t *testing.T) {
	a, _ := startAgent(t, &memSource{}, &recApplier{})
	err := a.Announce(context.Background(), "ns1", "ghost", []netip.Addr{netip.MustParseAddr("10.244.1.9")})
	if err == nil {
		t.Fatal("announce of a pod nobody knows succeeded")
	}
}

func TestAnnounceTimesOutWhenApplyFails(t *testing.T) {
	src := &memSource{objs: Objects{Pods: []*corev1.Pod{pod("ns1", "web", "n1", nil)}}}
	a, _ := startAgent(t, src, &recApplier{fail: errors.New("kernel says no")})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := a.Announce(ctx, "ns1", "web", []netip.Addr{netip.MustParseAddr("10.244.1.9")}); err == nil {
		t.Fatal("announce succeeded although nothing was applied")
	}
	if st := a.Status(); st.Synced || st.LastError == "" {
		t.Errorf("status = %+v, want unsynced with error", st)
	}
}

func TestOverlay(t *testing.T) {
	ip := netip.MustParseAddr("10.244.1.9")
	anns := map[string]*announcement{"ns1/new": {namespace: "ns1", name: "new", ips: []netip.Addr{ip}, pod: pod("ns1", "new", "n1", map[string]string{"v": "2"})}}
	cases := []struct {
		name     string
		pods     []*corev1.Pod
		wantPods map[string]string // name -> first IP ("" none)
		wantDone bool
	}{
		{"cache has the pod without IP yet", []*corev1.Pod{pod("ns1", "new", "n1", nil)},
			map[string]string{"new": "10.244.1.9"}, false},
		{"cache does not have the pod at all", nil, map[string]string{"new": "10.244.1.9"}, false},
		{"reused address drops the stale pod", []*corev1.Pod{pod("ns1", "old", "n1", nil, "10.244.1.9")},
			map[string]string{"new": "10.244.1.9"}, false},
		{"cache caught up", []*corev1.Pod{pod("ns1", "new", "n1", nil, "10.244.1.9")},
			map[string]string{"new": "10.244.1.9"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]int{}
			for _, p := range tc.pods {
				before[p.Name] = len(podIPs(p))
			}
			out, done := overlay(Objects{Pods: tc.pods}, anns)
			for _, p := range tc.pods {
				if len(podIPs(p)) != before[p.Name] {
					t.Errorf("overlay modified input pod %s", p.Name)
				}
			}
			got := map[string]string{}
			for _, p := range out.Pods {
				ips := podIPs(p)
				got[p.Name] = ""
				if len(ips) > 0 {
					got[p.Name] = ips[0].String()
				}
			}
			if len(got) != len(tc.wantPods) {
				t.Errorf("pods = %v, want %v", got, tc.wantPods)
			}
			for k, v := range tc.wantPods {
				if got[k] != v {
					t.Errorf("pod %s = %q, want %q", k, got[k], v)
				}
			}
			if (len(done) > 0) != tc.wantDone {
				t.Errorf("done = %v, want %v", done, tc.wantDone)
			}
		})
	}
}

func TestSnapshotBuilderMatchesBuildSnapshot(t *testing.T) {
	o := benchObjects(300)
	var sb SnapshotBuilder
	for round := 0; round < 3; round++ {
		got, want := sb.Build("n1", nil, o), BuildSnapshot("n1", nil, o)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: builder and BuildSnapshot differ", round)
		}
		// Replace a pod (changed labels, new IP) and drop another, as informers do.
		p := o.Pods[round].DeepCopy()
		p.Labels = map[string]string{"changed": "yes"}
		p.Status.PodIPs = []corev1.PodIP{{IP: "10.9.9.9"}}
		o.Pods[round] = p
		o.Pods = o.Pods[:len(o.Pods)-1]
	}
}

// getterSource lists no pods but can fetch one, as an informer cache that
// is behind would.
type getterSource struct {
	memSource
	pod   *corev1.Pod
	lists int
}

func (g *getterSource) Objects() (Objects, error) {
	g.mu.Lock()
	g.lists++
	g.mu.Unlock()
	return g.memSource.Objects()
}

func (g *getterSource) GetPod(_ context.Context, ns, name string) (*corev1.Pod, error) {
	if g.pod != nil && g.pod.Namespace == ns && g.pod.Name == name {
		return g.pod, nil
	}
	return nil, errors.New("not found")
}

func TestAnnounceFetchesThePodWithoutListing(t *testing.T) {
	src := &getterSource{pod: pod("ns1", "web", "n1", map[string]string{"app": "web"})}
	app := &recApplier{}
	a, _ := startAgent(t, src, app)
	waitFor(t, "first sync", func() bool { _, n := app.last(); return n == 1 })
	src.mu.Lock()
	before := src.lists
	src.mu.Unlock()
	ip := netip.MustParseAddr("10.244.1.9")
	if err := a.Announce(context.Background(), "ns1", "web", []netip.Addr{ip}); err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	lists := src.lists - before
	src.mu.Unlock()
	if lists != 1 { // the sync that applies the pod, not the lookup
		t.Errorf("announce listed the source %d times, want 1 (the sync)", lists)
	}
	a.mu.Lock()
	found := false
	for _, p := range a.snap.Pods {
		found = found || (p.Name == "web" && len(p.IPs) == 1 && p.IPs[0] == ip)
	}
	a.mu.Unlock()
	if !found {
		t.Error("pod fetched through GetPod is not in the applied snapshot")
	}
	if err := a.Announce(context.Background(), "ns1", "ghost", nil); err == nil {
		t.Error("announce of a pod GetPod cannot find succeeded")
	}
}
