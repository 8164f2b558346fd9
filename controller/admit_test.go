package controller

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/internal/textdiff"
)

func TestAnnouncementsOnlyOfThisNodesPodsAndRangesAreTaken(t *testing.T) {
	web := pod("ns1", "web", "n1", nil, "10.244.1.5") // a local pod, in the ruleset
	remote := pod("ns1", "remote", "n2", nil)
	local := pod("ns1", "new", "n1", nil)
	unbound := pod("ns1", "unbound", "", nil) // the cache has not seen its binding
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	cases := []struct {
		name    string
		node    *corev1.Node
		pod     *corev1.Pod
		ips     []netip.Addr
		wantErr string // "" when taken
	}{
		{"local pod with addresses from the node's podCIDRs", localNode(), local, addrs("10.244.1.9", "fd00:1::9"), ""},
		{"pod whose binding the agent has not seen, with a local address", localNode(), unbound, addrs("10.244.1.9"), ""},
		{"another node's pod with a local pod's address", localNode(), remote, addrs("10.244.1.5"), "runs on node n2"},
		{"another node's pod with its own node's address", localNode(), remote, addrs("10.244.2.7"), "runs on node n2"},
		{"local pod with another node's address", localNode(), local, addrs("10.244.2.7"), "outside node n1's podCIDRs"},
		{"local pod with one address of two outside the podCIDRs", localNode(), local, addrs("10.244.1.9", "fd00:2::9"), "fd00:2::9"},
		{"local pod taking a node's address outside the pod ranges", localNode(), local, addrs("192.168.1.1"), "outside"},
		{"local pod without addresses", localNode(), local, nil, "without addresses"},
		{"node without podCIDRs", node("n1", nil), local, addrs("10.244.1.9"), "no podCIDRs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &memSource{objs: snapshot.Objects{Pods: snapshot.NewPods(web, tc.pod), Nodes: []*corev1.Node{tc.node}}}
			app := &recApplier{}
			a, _ := startAgent(t, src, app)
			waitFor(t, "first sync", func() bool { _, n := app.last(); return n == 1 })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := a.Announce(ctx, tc.pod.Namespace, tc.pod.Name, tc.ips)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("announcement refused: %v", err)
				}
				if got := podIPsIn(appliedSnapshot(a), tc.pod.Namespace, tc.pod.Name); len(got) != len(tc.ips) {
					t.Errorf("announced pod has %v in the ruleset, want %v", got, tc.ips)
				}
				return
			}
			if !errors.Is(err, errNotLocal) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Announce = %v, want it refused saying %q", err, tc.wantErr)
			}
			a.mu.Lock()
			left := len(a.anns)
			a.mu.Unlock()
			if left != 0 {
				t.Errorf("refused announcement recorded")
			}
			if got := podIPsIn(appliedSnapshot(a), "ns1", "web"); len(got) != 1 || got[0] != netip.MustParseAddr("10.244.1.5") {
				t.Errorf("local pod web has %v after a refused announcement, want [10.244.1.5]", got)
			}
		})
	}
}

func TestSocketTellsThePluginWhyAnAnnouncementIsRefused(t *testing.T) {
	src := &memSource{objs: snapshot.Objects{Pods: snapshot.NewPods(pod("ns1", "remote", "n2", nil)), Nodes: []*corev1.Node{localNode()}}}
	a, _ := startAgent(t, src, &recApplier{})
	sock := filepath.Join(t.TempDir(), "agent.sock")
	serveSocket(t, a, sock)
	var err error
	waitFor(t, "an answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = agentapi.Call(ctx, sock, agentapi.Request{Op: agentapi.OpPodAdded, Namespace: "ns1", Name: "remote",
			ContainerID: "ctr1", IPs: []string{"10.244.1.5"}})
		return !errors.Is(err, agentapi.ErrNoAgent)
	})
	if err == nil || !strings.Contains(err.Error(), "pod ns1/remote runs on node n2, and this is node n1") {
		t.Errorf("plugin got %v, want the refusal and its reason", err)
	}
}

// lockedBuffer is a log sink the agent's goroutines may write to while the
// test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestUnconfirmedAnnouncementsAreLoggedAndCounted pins what an operator
// sees of pods the plugin could not have confirmed: each one is a warning
// in the agent's log and counts in weir_pod_announcements_total.
func TestUnconfirmedAnnouncementsAreLoggedAndCounted(t *testing.T) {
	src := &memSource{objs: snapshot.Objects{Pods: snapshot.NewPods(pod("ns1", "web", "n1", nil)), Nodes: []*corev1.Node{localNode()}}}
	var log lockedBuffer
	a := &Agent{Node: "n1", Source: src, Applier: &recApplier{}, Metrics: NewMetrics(), Log: slog.New(slog.NewTextHandler(&log, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	sock := filepath.Join(t.TempDir(), "agent.sock")
	serveSocket(t, a, sock)

	call := func(name, ip string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := agentapi.Call(ctx, sock, agentapi.Request{Op: agentapi.OpPodAdded, Namespace: "ns1", Name: name,
			ContainerID: "ctr-" + name, IPs: []string{ip}})
		return err
	}
	if err := call("web", "10.244.1.5"); err != nil {
		t.Fatalf("known pod: %v", err)
	}
	if err := call("ghost", "10.244.1.6"); err == nil || !strings.Contains(err.Error(), "unknown to the agent") {
		t.Fatalf("unknown pod: %v, want it refused as unknown", err)
	}
	for result, want := range map[string]float64{"confirmed": 1, "refused": 1, "timeout": 0} {
		if got := testutil.ToFloat64(a.Metrics.announced.WithLabelValues(result)); got != want {
			t.Errorf("weir_pod_announcements_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	var warned string
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "not confirmed") {
			warned += l + "\n"
		}
	}
	textdiff.Mentions(t, "warnings", warned, "pod=ns1/ghost", "containerID=ctr-ghost", "result=refused")
	if strings.Contains(warned, "ns1/web") {
		t.Errorf("confirmed pod logged as a warning:\n%s", warned)
	}
}
