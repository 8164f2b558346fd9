package controller

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/ruleset"
	corev1 "k8s.io/api/core/v1"
)

type memSource struct {
	mu   sync.Mutex
	objs snapshot.Objects
	err  error
	kick func()
}

func (m *memSource) Objects() (snapshot.Objects, error) {
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
	mu       sync.Mutex
	applied  []ruleset.Ruleset
	fail     error
	problems []dataplane.Problem // what each Apply reports
	gate     chan struct{}       // if set, Apply waits on it
	entered  chan struct{}       // if set, Apply sends on it first
}

func (r *recApplier) Apply(ctx context.Context, rs ruleset.Ruleset) ([]dataplane.Problem, error) {
	if r.entered != nil {
		r.entered <- struct{}{}
	}
	if r.gate != nil {
		<-r.gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return nil, r.fail
	}
	r.applied = append(r.applied, rs)
	return r.problems, nil
}

// errNoCounters is what recApplier's Counters says: it programs no kernel.
var errNoCounters = errors.New("no kernel counters")

func (r *recApplier) Counters(context.Context) (map[string]ruleset.CounterValue, error) {
	return nil, errNoCounters
}

func (r *recApplier) Close() error { return nil }

func (r *recApplier) last() (ruleset.Ruleset, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.applied) == 0 {
		return ruleset.Ruleset{}, 0
	}
	return r.applied[len(r.applied)-1], len(r.applied)
}

// pod and node build the objects of the tests (fixtures.Pod, fixtures.Node).
var pod, node = fixtures.Pod, fixtures.Node

// localNode is n1, the node of the agents startAgent starts, with the
// pod ranges the tests announce addresses from: an agent takes
// announcements only of addresses inside its node's podCIDRs.
func localNode() *corev1.Node {
	return node("n1", []string{"10.244.1.0/24", "fd00:1::/64"})
}

func startAgent(t *testing.T, src snapshot.Source, app dataplane.Applier) (*Agent, context.CancelFunc) {
	t.Helper()
	a := &Agent{Node: "n1", Source: src, Applier: app, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return a, runAgent(t, a)
}

// runAgent runs a until the test ends, or until the CancelFunc it returns.
func runAgent(t *testing.T, a *Agent) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	waitWithin(t, 5*time.Second, what, f)
}

// waitWithin is waitFor with another timeout.
func waitWithin(t *testing.T, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAnnounceReturnsOnlyAfterApply(t *testing.T) {
	src := &memSource{objs: snapshot.Objects{Pods: snapshot.NewPods(pod("ns1", "web", "n1", map[string]string{"app": "web"})),
		Nodes: []*corev1.Node{localNode()}}}
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
	a.mu.Lock()
	for _, p := range a.snap.Pods {
		snapHas = snapHas || (p.Name == "web" && len(p.IPs) == 1 && p.IPs[0] == netip.MustParseAddr("10.244.1.9"))
	}
	a.mu.Unlock()
	if !snapHas {
		t.Error("announced address not in the applied snapshot")
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
	src := &memSource{objs: snapshot.Objects{Pods: snapshot.NewPods(pod("ns1", "web", "n1", nil)), Nodes: []*corev1.Node{localNode()}}}
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

// getterSource lists no pods but can fetch one, as an informer cache that
// is behind would.
type getterSource struct {
	memSource
	pod   *corev1.Pod
	lists int
}

var _ snapshot.PodGetter = (*getterSource)(nil)

func (g *getterSource) Objects() (snapshot.Objects, error) {
	g.mu.Lock()
	g.lists++
	g.mu.Unlock()
	return g.memSource.Objects()
}

func (g *getterSource) GetPod(_ context.Context, ns, name string) (*snapshot.Pod, error) {
	if g.pod != nil && g.pod.Namespace == ns && g.pod.Name == name {
		return snapshot.NewPod(g.pod), nil
	}
	return nil, errors.New("not found")
}

func TestAnnounceFetchesThePodWithoutListing(t *testing.T) {
	src := &getterSource{pod: pod("ns1", "web", "n1", map[string]string{"app": "web"}),
		memSource: memSource{objs: snapshot.Objects{Nodes: []*corev1.Node{localNode()}}}}
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

// TestDataplaneProblemsReachStatusAndLog pins what an operator sees of
// the parts of a ruleset the backend could not express: each is in the
// agent's status (weirctl status) and a warning in its log, with its
// policy rule as fields.
func TestDataplaneProblemsReachStatusAndLog(t *testing.T) {
	problems := []dataplane.Problem{
		{Policy: "ns1/web", Direction: "egress", Rule: 2, Message: "a log rule with lookups or a verdict is not translated"},
		{Message: "missing chain x (drops)"},
	}
	var log lockedBuffer
	a := &Agent{Node: "n1", Source: &memSource{}, Applier: &recApplier{problems: problems},
		Log: slog.New(slog.NewJSONHandler(&log, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "first sync", func() bool { return a.Status().Synced })
	if got := a.Status().DataplaneProblems; !reflect.DeepEqual(got, problems) {
		t.Errorf("status has dataplane problems %+v, want %+v", got, problems)
	}
	type record struct {
		Level, Msg, Policy, Direction, Problem string
		Rule                                   *int
	}
	var logged []dataplane.Problem
	for _, line := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if r.Level != "WARN" || !strings.HasPrefix(r.Msg, "dataplane problem") {
			continue
		}
		p := dataplane.Problem{Policy: r.Policy, Direction: r.Direction, Message: r.Problem}
		if r.Rule != nil {
			p.Rule = *r.Rule
		}
		logged = append(logged, p)
	}
	if !reflect.DeepEqual(logged, problems) {
		t.Errorf("logged dataplane problems %+v, want %+v", logged, problems)
	}
}
