package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
)

// appliedSnapshot is the snapshot of the last applied ruleset.
func appliedSnapshot(a *Agent) policy.Snapshot {
	_, snap, _ := a.published()
	return snap
}

// podIPsIn returns the addresses pod ns/name has in s, or nil.
func podIPsIn(s policy.Snapshot, ns, name string) []netip.Addr {
	for _, p := range s.Pods {
		if p.Namespace == ns && p.Name == name {
			return p.IPs
		}
	}
	return nil
}

// lockedChangeSource hands over the changes queued with push, as
// KubeSource does; safe for the worker and a test to share.
type lockedChangeSource struct {
	memSource
	queued []snapshot.Changes
}

func (c *lockedChangeSource) push(ch snapshot.Changes) {
	c.mu.Lock()
	c.queued = append(c.queued, ch)
	kick := c.kick
	c.mu.Unlock()
	kick()
}

func (c *lockedChangeSource) Changes() (snapshot.Changes, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queued) == 0 {
		return snapshot.Changes{}, nil
	}
	ch := c.queued[0]
	c.queued = c.queued[1:]
	return ch, nil
}

func TestAnnouncedPodDeletedBeforeItsIPWasSeen(t *testing.T) {
	web := pod("ns1", "web", "n1", map[string]string{"app": "web"}) // no address yet
	web.UID = "uid-1"
	ip := netip.MustParseAddr("10.244.1.9")
	nodes := []*corev1.Node{localNode()}
	listing := func() snapshot.Source {
		return &memSource{objs: snapshot.Objects{Pods: snapshot.NewPods(web), Nodes: nodes}}
	}
	deleteListed := func(s snapshot.Source) {
		m := s.(*memSource)
		m.mu.Lock()
		m.objs = snapshot.Objects{Nodes: nodes}
		kick := m.kick
		m.mu.Unlock()
		kick()
	}
	changes := func() snapshot.Source {
		return &lockedChangeSource{queued: []snapshot.Changes{{Full: true, Objects: snapshot.Objects{Pods: snapshot.NewPods(web), Nodes: nodes}}},
			memSource: memSource{objs: snapshot.Objects{Pods: snapshot.NewPods(web), Nodes: nodes}}}
	}
	deleteChanged := func(s snapshot.Source) {
		s.(*lockedChangeSource).push(snapshot.Changes{Pods: map[string]*snapshot.Pod{"ns1/web": nil}})
	}
	cases := []struct {
		name   string
		src    func() snapshot.Source
		delete func(snapshot.Source)
		// failing: the sync that sees the delete fails to apply.
		failing bool
	}{
		{"listing source", listing, deleteListed, false},
		{"change source", changes, deleteChanged, false},
		{"change source that never had the pod", func() snapshot.Source {
			return &lockedChangeSource{queued: []snapshot.Changes{{Full: true, Objects: snapshot.Objects{Nodes: nodes}}},
				memSource: memSource{objs: snapshot.Objects{Pods: snapshot.NewPods(web), Nodes: nodes}}}
		}, deleteChanged, false},
		{"listing source, delete seen by a failed sync", listing, deleteListed, true},
		{"change source, delete seen by a failed sync", changes, deleteChanged, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src()
			app := &recApplier{}
			a, _ := startAgent(t, src, app)
			waitFor(t, "first sync", func() bool { _, n := app.last(); return n == 1 })
			if err := a.Announce(context.Background(), "ns1", "web", []netip.Addr{ip}); err != nil {
				t.Fatal(err)
			}
			if got := podIPsIn(appliedSnapshot(a), "ns1", "web"); len(got) != 1 || got[0] != ip {
				t.Fatalf("announced pod has %v, want [%v]", got, ip)
			}
			_, n := app.last()
			if tc.failing {
				app.mu.Lock()
				app.fail = errors.New("kernel says no")
				app.mu.Unlock()
			}
			tc.delete(src)
			if tc.failing {
				waitFor(t, "the failed sync", func() bool { return a.Status().LastError != "" })
				app.mu.Lock()
				app.fail = nil
				app.mu.Unlock()
			}
			waitFor(t, "the sync after the delete", func() bool { _, m := app.last(); return m > n })
			if got := podIPsIn(appliedSnapshot(a), "ns1", "web"); got != nil {
				t.Errorf("deleted pod still in the snapshot with %v", got)
			}
			a.mu.Lock()
			left := len(a.anns)
			a.mu.Unlock()
			if left != 0 {
				t.Errorf("%d announcements left, want none", left)
			}
		})
	}
}

func TestDeleteOfAnOlderPodKeepsTheAnnouncement(t *testing.T) {
	old := pod("ns1", "web-0", "n1", nil, "10.244.1.5")
	old.UID = "uid-old"
	recreated := pod("ns1", "web-0", "n1", nil) // the cache has not seen it yet
	recreated.UID = "uid-new"
	src := &lockedChangeSource{queued: []snapshot.Changes{{Full: true, Objects: snapshot.Objects{Pods: snapshot.NewPods(old), Nodes: []*corev1.Node{localNode()}}}}}
	app := &recApplier{}
	a, _ := startAgent(t, &getterSource2{lockedChangeSource: src, pod: recreated}, app)
	waitFor(t, "first sync", func() bool { _, n := app.last(); return n == 1 })
	ip := netip.MustParseAddr("10.244.1.9")
	if err := a.Announce(context.Background(), "ns1", "web-0", []netip.Addr{ip}); err != nil {
		t.Fatal(err)
	}
	_, n := app.last()
	src.push(snapshot.Changes{Pods: map[string]*snapshot.Pod{"ns1/web-0": nil}}) // the old pod's delete
	waitFor(t, "the sync after the delete", func() bool { _, m := app.last(); return m > n })
	if got := podIPsIn(appliedSnapshot(a), "ns1", "web-0"); len(got) != 1 || got[0] != ip {
		t.Errorf("recreated pod has %v after its predecessor's delete, want [%v]", got, ip)
	}
}

// getterSource2 is a change source that can fetch one pod its cache lacks.
type getterSource2 struct {
	*lockedChangeSource
	pod *corev1.Pod
}

var _ snapshot.PodGetter = (*getterSource2)(nil)

func (g *getterSource2) GetPod(_ context.Context, ns, name string) (*snapshot.Pod, error) {
	if g.pod.Namespace == ns && g.pod.Name == name {
		return snapshot.NewPod(g.pod), nil
	}
	return nil, errors.New("not found")
}

func TestReannouncementWhileSyncingIsKept(t *testing.T) {
	ip1, ip2 := netip.MustParseAddr("10.244.1.9"), netip.MustParseAddr("10.244.1.10")
	src := &memSource{objs: snapshot.Objects{Pods: snapshot.NewPods(pod("ns1", "web", "n1", nil, ip1.String())), Nodes: []*corev1.Node{localNode()}}}
	app := &recApplier{}
	a, _ := startAgent(t, src, app)
	waitFor(t, "first sync", func() bool { _, n := app.last(); return n == 1 })

	// The first announcement is one the source has caught up with: the
	// sync forgets it, unless the pod was announced again meanwhile.
	app.entered, app.gate = make(chan struct{}), make(chan struct{})
	errs := make(chan error, 2)
	go func() { errs <- a.Announce(context.Background(), "ns1", "web", []netip.Addr{ip1}) }()
	<-app.entered // that sync has read the announcements
	go func() { errs <- a.Announce(context.Background(), "ns1", "web", []netip.Addr{ip2}) }()
	waitFor(t, "second announcement", func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.wanted == 2 })
	go func() {
		for range app.entered {
		}
	}()
	close(app.gate)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := podIPsIn(appliedSnapshot(a), "ns1", "web"); len(got) != 1 || got[0] != ip2 {
		t.Errorf("pod has %v after it was announced again with %v", got, ip2)
	}
}

func TestPublishedSnapshotStaysTheAppliedOne(t *testing.T) {
	ip1, ip2 := netip.MustParseAddr("10.244.1.9"), netip.MustParseAddr("10.244.1.10")
	web := pod("ns1", "web", "n1", nil, ip1.String())
	src := &lockedChangeSource{queued: []snapshot.Changes{{Full: true, Objects: snapshot.Objects{Pods: snapshot.NewPods(web)}}}}
	app := &recApplier{}
	a, _ := startAgent(t, src, app)
	waitFor(t, "first sync", func() bool { _, n := app.last(); return n == 1 })

	app.entered, app.gate = make(chan struct{}), make(chan struct{})
	src.push(snapshot.Changes{Pods: map[string]*snapshot.Pod{"ns1/web": snapshot.NewPod(pod("ns1", "web", "n1", nil, ip2.String()))}})
	<-app.entered // the next sync has read the change, and not applied it yet
	rs, snap, _ := a.published()
	go func() {
		for range app.entered {
		}
	}()
	close(app.gate)
	// The next published snapshot reuses the worker's pod buffer: the one
	// taken before is the caller's own, and stays the applied one's.
	waitFor(t, "the second sync published", func() bool {
		got := podIPsIn(appliedSnapshot(a), "ns1", "web")
		return len(got) == 1 && got[0] == ip2
	})
	if got := podIPsIn(snap, "ns1", "web"); len(got) != 1 || got[0] != ip1 {
		t.Errorf("snapshot published with the applied ruleset has web at %v, want [%v] (the ruleset's)", got, ip1)
	}
	if !strings.Contains(rs.String(), ip1.String()) {
		t.Errorf("applied ruleset lacks %v:\n%s", ip1, rs.String())
	}
}

// TestAnnouncedPodSyncsTakePodDeltas runs the worker's syncs around a new
// local pod: announced while the source has it without an address, then
// caught up, then another pod changed. The Compiler must take every
// sync's PodDelta but the first's, and apply the announced address.
func TestAnnouncedPodSyncsTakePodDeltas(t *testing.T) {
	o := snapshot.Objects{Nodes: []*corev1.Node{localNode()},
		Pods: snapshot.NewPods(pod("ns1", "db", "n1", map[string]string{"app": "db"}, "10.244.1.2"), pod("ns1", "api", "n2", nil, "10.244.2.2"))}
	src := &changeSource{memSource: memSource{objs: o}, next: snapshot.Changes{Full: true, Objects: o}}
	a := &Agent{Node: "n1", Source: src, Applier: &nopApplier{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.init()
	sync := func(what string, ch snapshot.Changes) {
		t.Helper()
		src.next = ch
		if err := a.sync(context.Background()); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !a.compiler.UsedPodDelta() {
			t.Errorf("%s: the Compiler compared every pod", what)
		}
	}
	if err := a.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("10.244.1.9")
	web := snapshot.NewPod(pod("ns1", "web", "n1", nil))
	a.mu.Lock()
	a.anns["ns1/web"] = &announcement{namespace: "ns1", name: "web", ips: []netip.Addr{ip}, pod: web}
	a.mu.Unlock()
	sync("announced", snapshot.Changes{Pods: map[string]*snapshot.Pod{"ns1/web": web}})
	if got := podIPsIn(appliedSnapshot(a), "ns1", "web"); len(got) != 1 || got[0] != ip {
		t.Fatalf("announced pod has %v, want [%v]", got, ip)
	}
	caught := *web
	caught.IPs = []netip.Addr{ip}
	sync("caught up", snapshot.Changes{Pods: map[string]*snapshot.Pod{"ns1/web": &caught}})
	sync("done", snapshot.Changes{Pods: map[string]*snapshot.Pod{"ns1/db": snapshot.NewPod(pod("ns1", "db", "n1", map[string]string{"app": "db2"}, "10.244.1.2"))}})
	if len(a.anns) != 0 {
		t.Errorf("announcements left: %v", a.anns)
	}
}
