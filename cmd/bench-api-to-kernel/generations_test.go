package main

import (
	"context"
	"testing"
	"time"
)

// A reader that fell behind finds the latest commit, not the 64th.
func TestGenerationsKeepTheLatest(t *testing.T) {
	g := &generations{commits: make(chan time.Time, 64)}
	t0 := time.Unix(1000, 0)
	for i := range 65 {
		g.notify(t0.Add(time.Duration(i) * time.Second))
	}
	if got, want := latest(g.commits, time.Time{}), t0.Add(64*time.Second); !got.Equal(want) {
		t.Errorf("latest = %v, want %v", got, want)
	}
}

// A commit message from before the write (queued after the bench emptied
// the queue) does not date the change.
func TestGenerationsAwaitNeverBeforeTheWrite(t *testing.T) {
	g := &generations{commits: make(chan time.Time, 64)}
	since := time.Now()
	g.notify(since.Add(-time.Second))
	reads := 0
	present := func() (bool, error) { reads++; return reads > 1, nil }
	at, err := g.await(context.Background(), present, true, since, time.Second, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if at.Before(since) {
		t.Errorf("await dated the change %v before the write", since.Sub(at))
	}
}
