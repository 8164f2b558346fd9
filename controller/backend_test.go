package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/dataplane"
)

// TestBackendChoice pins when auto falls back to iptables: only when the
// kernel has no nf_tables, never when nf_tables is there but failed.
func TestBackendChoice(t *testing.T) {
	nftOK := func() (dataplane.Applier, error) { return &recApplier{}, nil }
	nftErr := func(err error) func() (dataplane.Applier, error) {
		return func() (dataplane.Applier, error) { return nil, fmt.Errorf("open nftables netlink: %w", err) }
	}
	cases := []struct {
		name, backend string
		openNFT       func() (dataplane.Applier, error)
		want          string // backend used, or "" for an error
		wantErr       string
		legacyOpened  bool
	}{
		{"auto uses nftables", BackendAuto, nftOK, BackendNFTables, "", false},
		{"auto falls back without nfnetlink", BackendAuto, nftErr(unix.EPROTONOSUPPORT), BackendIPTables, "", true},
		{"auto falls back without the nf_tables subsystem", BackendAuto, nftErr(unix.EOPNOTSUPP), BackendIPTables, "", true},
		{"auto fails when nf_tables is there but refuses", BackendAuto, nftErr(unix.EPERM), "", "not falling back to iptables", false},
		{"auto fails when nf_tables is there but errs", BackendAuto, nftErr(unix.ENOBUFS), "", "not falling back to iptables", false},
		{"nftables never falls back", BackendNFTables, nftErr(unix.EPROTONOSUPPORT), "", "nftables backend", false},
		{"iptables asked for", BackendIPTables, nftOK, BackendIPTables, "", false},
		{"unknown backend", "ebpf", nftOK, "", "unknown backend", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			legacy := false
			openLegacy := func() (dataplane.Applier, error) { legacy = true; return &recApplier{}, nil }
			openIPT := func() (dataplane.Applier, error) { return &recApplier{}, nil }
			a, used, err := newApplier(tc.backend, tc.openNFT, openLegacy, openIPT)
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
			} else if err != nil || used != tc.want || a == nil {
				t.Fatalf("got %q, %v; want %q", used, err, tc.want)
			}
			if legacy != tc.legacyOpened {
				t.Errorf("iptables-legacy opened: %v, want %v", legacy, tc.legacyOpened)
			}
		})
	}
}

// TestStaleRemovedAfterFirstApply checks that what another backend left is
// removed once, and only once a ruleset of the backend in use is in the
// kernel: removing it before would leave the node without policy.
func TestStaleRemovedAfterFirstApply(t *testing.T) {
	app := &recApplier{fail: errors.New("no kernel")}
	calls := 0
	a := &Agent{Node: "n1", Source: &memSource{}, Applier: app, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		RemoveStale: func(context.Context) ([]string, error) {
			calls++
			if _, n := app.last(); n == 0 {
				t.Error("stale rules removed before the first ruleset was applied")
			}
			return []string{"table inet weir"}, nil
		}}
	a.init()
	ctx := context.Background()
	if err := a.sync(ctx); err == nil {
		t.Fatal("sync with a failing applier succeeded")
	}
	if calls != 0 {
		t.Fatalf("RemoveStale ran after a failed apply")
	}
	app.mu.Lock()
	app.fail = nil
	app.mu.Unlock()
	for range 3 {
		if err := a.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Errorf("RemoveStale ran %d times, want 1", calls)
	}
}
