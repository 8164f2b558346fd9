package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPeerBinaryRejectsBadSpecs(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "kube-router")
	for _, spec := range []string{"kube-router", "kube-router=", "cilium=/bin/true", "=/bin/true", "kube-router=" + missing} {
		if bin, err := peerBinary(spec); err == nil {
			t.Errorf("peerBinary(%q) = %q, want an error", spec, bin)
		}
	}
}

// The name kube-router v2.1.0 gives a policy's target-pod set: "KUBE-SRC-"
// and the first 16 characters of the base32 of sha256(namespace + name +
// "IPv4"), here computed with coreutils:
//
//	printf 'ns0app0-0000IPv4' | sha256sum | cut -d' ' -f1 | xxd -r -p | base32 | cut -c1-16
func TestSourceSetName(t *testing.T) {
	if got, want := sourceSetName("ns0", "app0-0000"), "KUBE-SRC-BJM2DQA2LV6QPCSP"; got != want {
		t.Errorf("sourceSetName = %q, want %q", got, want)
	}
}

// A sync's end counts once its line is complete, also when the log is
// read in the middle of it.
func TestSyncLogCountsEndsAcrossReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kube-router.log")
	l := &syncLog{path: path}
	for i, step := range []struct {
		write string
		ends  int
	}{
		{"I1206 sync iptables t", 0},
		{"ook 15.2s\nI1206 Starting sync of iptables\n", 1},
		{"I1206 Saving IPv4 iptables rules took 1s\nI1206 sync iptables took 15s\nI1206 sync ipt", 2},
		{"ables took 14s\n", 3},
	} {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString(step.write)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := l.read(); err != nil {
			t.Fatal(err)
		}
		if l.ends != step.ends {
			t.Errorf("after write %d (%q): %d sync ends, want %d", i, strings.TrimSpace(step.write), l.ends, step.ends)
		}
	}
	for range 3 {
		if err := l.wait(); err != nil {
			t.Fatal(err)
		}
	}
	if l.waited != 3 {
		t.Errorf("waited for %d sync ends, want 3", l.waited)
	}
}

// settle returns once every started sync has ended and the log stayed
// quiet, and fails while a sync that started has not ended.
func TestSyncLogSettle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kube-router.log")
	write := func(s string) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	write("I1206 Starting sync of iptables with version: 1\nI1206 sync iptables took 12s\nI1206 Starting sync of iptables with version: 2\n")
	l := &syncLog{path: path}
	if err := l.settle(10*time.Millisecond, 200*time.Millisecond); err == nil {
		t.Fatalf("settle with a second sync running: nil error (%d started, %d ended)", l.starts, l.ends)
	}
	write("I1206 sync iptables took 13s\n")
	if err := l.settle(10*time.Millisecond, time.Second); err != nil {
		t.Fatal(err)
	}
	if l.starts != 2 || l.ends != 2 || l.waited != 2 {
		t.Errorf("after settling: %d started, %d ended, %d waited for; want 2 each", l.starts, l.ends, l.waited)
	}
}
