package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/internal/textdiff"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReadyzAndMetricsFollowSyncs(t *testing.T) {
	app := &recApplier{fail: errors.New("no kernel")}
	a := &Agent{Node: "n1", Source: &memSource{objs: snapshot.Objects{Pods: snapshot.NewPods(pod("ns", "p", "n1", nil, "10.0.0.1"))}},
		Applier: app, Metrics: NewMetrics(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	if code, _ := get(t, srv.URL+"/healthz"); code != 200 {
		t.Errorf("healthz = %d", code)
	}
	if code, _ := get(t, srv.URL+"/readyz"); code != 503 {
		t.Errorf("readyz before any sync = %d, want 503", code)
	}
	a.init()
	if err := a.sync(context.Background()); err == nil {
		t.Fatal("sync with a failing applier succeeded")
	}
	if _, body := get(t, srv.URL+"/metrics"); !strings.Contains(body, "weir_sync_errors_total 1") {
		t.Errorf("error not counted:\n%s", body)
	}
	app.fail = nil
	a.Kick()
	if err := a.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, srv.URL+"/readyz"); code != 200 {
		t.Errorf("readyz after sync = %d", code)
	}
	_, body := get(t, srv.URL+"/metrics")
	textdiff.Mentions(t, "metrics", body, "weir_syncs_total 1", `weir_sync_duration_seconds_count{phase="apply"} 1`,
		"weir_event_to_kernel_seconds_count 1", "weir_set_elements{", "weir_chains ", "go_gc_heap_live_bytes ")
	st := a.Status().LastSyncTimes
	if times := []time.Time{st.FirstEvent, st.Start, st.Read, st.Compiled, st.Applied}; slices.ContainsFunc(times, time.Time.IsZero) ||
		!slices.IsSortedFunc(times, time.Time.Compare) {
		t.Errorf("last sync's times out of order or missing: %+v", st)
	}
}

// TestPprofOptIn: /debug/pprof/ is served only with Agent.Pprof, and then
// behind MetricsAuth like /metrics.
func TestPprofOptIn(t *testing.T) {
	a := &Agent{Metrics: NewMetrics()}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	if code, _ := get(t, srv.URL+"/debug/pprof/heap"); code != http.StatusNotFound {
		t.Errorf("without Pprof: GET /debug/pprof/heap = %d, want 404", code)
	}
	a.Pprof = true
	on := httptest.NewServer(a.Handler())
	defer on.Close()
	if code, body := get(t, on.URL+"/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile:") {
		t.Errorf("with Pprof: GET /debug/pprof/heap = %d %.60q, want 200 and a heap profile", code, body)
	}
	a.MetricsAuth = &KubeAuth{}
	guarded := httptest.NewServer(a.Handler())
	defer guarded.Close()
	if code, _ := get(t, on.URL+"/debug/pprof/nonesuch"); code != http.StatusNotFound {
		t.Errorf("with Pprof: GET /debug/pprof/nonesuch = %d, want 404", code)
	}
	if code, body := get(t, on.URL+"/debug/pprof/profile?seconds=1"); code != http.StatusOK || len(body) == 0 {
		t.Errorf("with Pprof: GET /debug/pprof/profile = %d, %d bytes, want 200 and a CPU profile", code, len(body))
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile", "/debug/pprof/goroutine"} {
		if code, _ := get(t, guarded.URL+path); code != http.StatusUnauthorized {
			t.Errorf("with MetricsAuth, no token: GET %s = %d, want 401", path, code)
		}
	}
}
