package kube

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestParallel(t *testing.T) {
	tests := []struct {
		name      string
		n         int
		failAt    int // -1: never
		wantCalls func(int64) bool
		wantErr   bool
	}{
		{"every index runs once", 100, -1, func(c int64) bool { return c == 100 }, false},
		{"an error is returned and stops the feed", 10000, 3, func(c int64) bool { return c < 10000 }, true},
		{"zero work is fine", 0, -1, func(c int64) bool { return c == 0 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls int64
			seen := make([]int32, tt.n)
			err := Parallel(context.Background(), tt.n, 8, func(ctx context.Context, i int) error {
				atomic.AddInt64(&calls, 1)
				atomic.AddInt32(&seen[i], 1)
				if i == tt.failAt {
					return errors.New("boom")
				}
				if tt.failAt >= 0 && i > tt.failAt {
					<-ctx.Done() // hold every worker until the failure has cancelled the feed
				}
				return nil
			})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantCalls(calls) {
				t.Errorf("calls = %d", calls)
			}
			for i, s := range seen {
				if s > 1 {
					t.Fatalf("index %d ran %d times", i, s)
				}
			}
		})
	}
}
