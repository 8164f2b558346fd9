package controller

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// jumpApplier is a dataplane.JumpKeeper that finds FORWARD's jump pushed down on its
// first two checks.
type jumpApplier struct {
	recApplier
	checks atomic.Int32
}

func (j *jumpApplier) KeepJumpsFirst(context.Context) ([]string, error) {
	if j.checks.Add(1) <= 2 {
		return []string{"iptables filter FORWARD"}, nil
	}
	return nil, nil
}

func TestAgentKeepsJumpsFirstBetweenSyncs(t *testing.T) {
	app := &jumpApplier{}
	a := &Agent{Node: "n1", Source: &memSource{}, Applier: app, Metrics: NewMetrics(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), JumpCheckInterval: 5 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for app.checks.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := app.checks.Load(); n < 4 {
		t.Fatalf("%d checks in 5s at a 5ms interval", n)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	_, body := get(t, srv.URL+"/metrics")
	if want := `weir_jump_repairs_total{chain="iptables filter FORWARD"} 2`; !strings.Contains(body, want) {
		t.Errorf("metrics lack %q", want)
	}
}
