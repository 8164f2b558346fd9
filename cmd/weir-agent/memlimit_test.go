package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestMemoryLimit(t *testing.T) {
	tests := []struct {
		live uint64
		frac float64
		want int64
	}{
		{10 << 20, 0.5, 42 << 20},   // small heap: the floor
		{200 << 20, 0.5, 300 << 20}, // large heap: frac of it
		{200 << 20, 0, 232 << 20},
	}
	for _, tt := range tests {
		if got := memoryLimit(tt.live, tt.frac); got != tt.want {
			t.Errorf("memoryLimit(%d MiB, %g) = %d MiB, want %d MiB", tt.live>>20, tt.frac, got>>20, tt.want>>20)
		}
	}
}

func TestCheckHeadroom(t *testing.T) {
	for _, f := range []float64{0, 0.5, 2, maxHeadroom} {
		if err := checkHeadroom(f); err != nil {
			t.Errorf("checkHeadroom(%g) = %v, want ok", f, err)
		}
	}
	for _, f := range []float64{-0.1, 10.5, 1e300, math.NaN(), math.Inf(1)} {
		if err := checkHeadroom(f); err == nil {
			t.Errorf("checkHeadroom(%g) = nil, want an error", f)
		}
	}
}

// TestFollowLiveHeapSetsTheLimitAfterCollections: a collection sets the
// limit from the live heap; after stop, collections leave it alone.
func TestFollowLiveHeapSetsTheLimitAfterCollections(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	stop := followLiveHeap(0.5)
	deadline := time.Now().Add(5 * time.Second)
	for debug.SetMemoryLimit(-1) == math.MaxInt64 {
		if time.Now().After(deadline) {
			t.Fatal("no memory limit set after collections")
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if got := debug.SetMemoryLimit(-1); got < headroomFloor || got > 1<<30 {
		t.Errorf("limit %d MiB, want the live heap plus 32 MiB", got>>20)
	}
	stop()
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	debug.SetMemoryLimit(math.MaxInt64)
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("limit %d MiB set after stop", got>>20)
	}
}

func TestCheckGCPercent(t *testing.T) {
	for _, p := range []int{1, defaultGCPercent, 100, 400} {
		if err := checkGCPercent(p); err != nil {
			t.Errorf("checkGCPercent(%d) = %v, want ok", p, err)
		}
	}
	for _, p := range []int{0, -1, math.MinInt} {
		if err := checkGCPercent(p); err == nil {
			t.Errorf("checkGCPercent(%d) = nil, want an error", p)
		}
	}
}

// TestSetGCPercent: the flag's GOGC is the runtime's, unless the
// environment set GOGC.
func TestSetGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	if !setGCPercent(37, "") {
		t.Fatal("setGCPercent(37, \"\") did not set GOGC")
	}
	if got := debug.SetGCPercent(100); got != 37 {
		t.Errorf("GOGC %d after setGCPercent(37, \"\"), want 37", got)
	}
	if setGCPercent(37, "200") {
		t.Error("setGCPercent(37, \"200\") set GOGC over the environment's")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC %d after setGCPercent(37, \"200\"), want 100 (untouched)", got)
	}
}
