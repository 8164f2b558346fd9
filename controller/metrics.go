package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/weir-cni/weir/ruleset"
)

// Metrics are the agent's Prometheus metrics.
type Metrics struct {
	reg           *prometheus.Registry
	syncDuration  *prometheus.HistogramVec
	eventToKernel prometheus.Histogram
	syncErrors    prometheus.Counter
	syncs         prometheus.Counter
	setElements   *prometheus.GaugeVec
	chains        prometheus.Gauge
	rules         prometheus.Gauge
	problems      prometheus.Gauge
	lastSync      prometheus.Gauge
	announced     *prometheus.CounterVec
	jumpRepairs   *prometheus.CounterVec
}

// NewMetrics registers the agent's metrics in a fresh registry (plus the Go
// and process collectors; the Go collector adds go_gc_heap_live_bytes, the
// heap the last garbage collection kept: the caches, the view and the
// compiler's state, without the garbage heap_inuse also counts).
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "weir_sync_duration_seconds",
			Help:    "Time of one sync, by phase (read, compile, apply).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"phase"}),
		eventToKernel: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weir_event_to_kernel_seconds",
			Help:    "From the first change event of a sync to its ruleset being in the kernel.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		syncErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_sync_errors_total", Help: "Syncs that failed; the kernel kept the previous ruleset."}),
		syncs:       prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_syncs_total", Help: "Syncs applied."}),
		setElements: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_set_elements", Help: "Elements per nftables set or map of the applied ruleset."}, []string{"set"}),
		chains:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "weir_chains", Help: "Chains in the applied ruleset."}),
		rules:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "weir_rules", Help: "Rules in the applied ruleset."}),
		problems:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "weir_policy_problems", Help: "Policy problems reported by the last compile."}),
		lastSync:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "weir_last_sync_timestamp_seconds", Help: "Unix time of the last applied sync."}),
		announced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_pod_announcements_total",
			Help: "Pods the plugin asked the agent to program, by result: confirmed, refused, or timeout " +
				"(not in the kernel in time). A fail-closed plugin retries the pod; a fail-open one wired it unclassified."},
			[]string{"result"}),
		jumpRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_jump_repairs_total",
			Help: "Times weir moved its jump back to position 1 of a built-in chain after another program put a rule above it (iptables backend)."}, []string{"chain"}),
	}
	m.reg.MustRegister(m.syncDuration, m.eventToKernel, m.syncErrors, m.syncs, m.setElements, m.chains, m.rules,
		m.problems, m.lastSync, m.announced, m.jumpRepairs, goCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// goCollector is the default Go collector plus the live heap.
func goCollector() prometheus.Collector {
	return collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)}))
}

// observeSync records one successful sync.
func (m *Metrics) observeSync(read, compile, apply time.Duration, firstEvent time.Time, rs ruleset.Ruleset) {
	if m == nil {
		return
	}
	m.syncDuration.WithLabelValues("read").Observe(read.Seconds())
	m.syncDuration.WithLabelValues("compile").Observe(compile.Seconds())
	m.syncDuration.WithLabelValues("apply").Observe(apply.Seconds())
	if !firstEvent.IsZero() {
		m.eventToKernel.Observe(time.Since(firstEvent).Seconds())
	}
	m.syncs.Inc()
	m.lastSync.SetToCurrentTime()
	m.setElements.Reset()
	for _, s := range rs.Sets {
		m.setElements.WithLabelValues(s.Name).Set(float64(len(s.Elems)))
	}
	m.chains.Set(float64(len(rs.Chains)))
	n := 0
	for _, c := range rs.Chains {
		n += len(c.Rules)
	}
	m.rules.Set(float64(n))
	m.problems.Set(float64(len(rs.Problems)))
}

// observeAnnouncement counts one pod-added request by its outcome.
func (m *Metrics) observeAnnouncement(err error) {
	if m == nil {
		return
	}
	m.announced.WithLabelValues(announceResult(err)).Inc()
}

func announceResult(err error) string {
	switch {
	case err == nil:
		return "confirmed"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timeout"
	}
	return "refused"
}

func (m *Metrics) observeJumpRepair(chain string) {
	if m != nil {
		m.jumpRepairs.WithLabelValues(chain).Inc()
	}
}

func (m *Metrics) observeError() {
	if m != nil {
		m.syncErrors.Inc()
	}
}

// ServeHTTP serves Handler on addr until ctx ends.
func (a *Agent) ServeHTTP(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	return nil
}

// Handler serves /metrics, /healthz (the process is alive), /readyz (the
// first ruleset is in the kernel and the last sync did not fail) and, with
// Pprof, /debug/pprof/.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	if a.Metrics != nil {
		var h http.Handler = promhttp.HandlerFor(a.Metrics.reg, promhttp.HandlerOpts{})
		if a.MetricsAuth != nil {
			h = a.MetricsAuth.Wrap(h)
		}
		mux.Handle("/metrics", h)
	}
	if a.Pprof {
		a.handlePprof(mux)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := a.Status()
		if !st.Synced || st.LastError != "" {
			http.Error(w, fmt.Sprintf("not ready: synced=%v last error=%q", st.Synced, st.LastError), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Registerer is where other parts of the agent (the DNS proxy) register
// their metrics, served on /metrics with the agent's.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// handlePprof serves Go's profiles on mux: /debug/pprof/profile, a CPU
// profile of ?seconds= (default 30), and /debug/pprof/NAME, runtime/pprof's
// profile NAME (heap, allocs, goroutine...; ?gc=1 collects garbage before,
// ?debug=1 writes text); each behind MetricsAuth when it is set (a profile
// shows as much of the agent as its metrics). net/http/pprof's handlers
// would add 0.4 MB to the binary (runtime/trace, its index page).
func (a *Agent) handlePprof(mux *http.ServeMux) {
	var h http.Handler = http.HandlerFunc(serveProfile)
	if a.MetricsAuth != nil {
		h = a.MetricsAuth.Wrap(h)
	}
	mux.Handle("/debug/pprof/", h)
}

func serveProfile(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/debug/pprof/")
	if name == "profile" {
		serveCPUProfile(w, r)
		return
	}
	p := pprof.Lookup(name)
	if p == nil {
		http.Error(w, fmt.Sprintf("unknown profile %q", name), http.StatusNotFound)
		return
	}
	if r.FormValue("gc") != "" {
		runtime.GC()
	}
	debug, _ := strconv.Atoi(r.FormValue("debug"))
	if debug == 0 {
		w.Header().Set("Content-Type", "application/octet-stream")
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	_ = p.WriteTo(w, debug)
}

func serveCPUProfile(w http.ResponseWriter, r *http.Request) {
	sec, err := strconv.Atoi(r.FormValue("seconds"))
	if err != nil || sec <= 0 {
		sec = 30
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := pprof.StartCPUProfile(w); err != nil {
		http.Error(w, "cpu profile: "+err.Error(), http.StatusConflict)
		return
	}
	select {
	case <-time.After(time.Duration(sec) * time.Second):
	case <-r.Context().Done():
	}
	pprof.StopCPUProfile()
}
