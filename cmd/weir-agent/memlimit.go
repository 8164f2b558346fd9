package main

import (
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// defaultGCPercent is the agent's GOGC unless $GOGC is set. Go's 100
// lets the heap grow to twice the live one (the caches and the compiler's
// state) before it collects; the agent's heap is mostly that live state,
// so halving the growth saves a large share of its memory, while the
// collections it adds cost a sync little. Going lower makes them frequent
// enough to slow syncs markedly (the README has the API bench's figures).
const defaultGCPercent = 50

// checkGCPercent checks --gc-percent: a positive GOGC.
func checkGCPercent(p int) error {
	if p < 1 {
		return fmt.Errorf("--gc-percent %d: want a positive GOGC (set GOGC=off in the environment to turn collection off)", p)
	}
	return nil
}

// setGCPercent sets GOGC to p unless the environment's GOGC (env) is set,
// which wins as it does for any Go program. It reports whether it set it.
func setGCPercent(p int, env string) bool {
	if env != "" {
		return false
	}
	debug.SetGCPercent(p)
	return true
}

// headroomFloor is the least memory the limit leaves above the live heap:
// a sync's garbage (≈1 MiB a label change at 10,000 pods, a full listing's
// decoding at start) fits in it many times, so a small heap is collected
// as Go's GOGC alone would collect it.
const headroomFloor = 32 << 20

// maxHeadroom bounds --heap-headroom: a limit of more than the live heap
// and ten times it again is no limit (GOGC=100 already collects at twice
// the live heap), and larger fractions would overflow memoryLimit.
const maxHeadroom = 10

// checkHeadroom checks --heap-headroom: 0 (off) or a positive fraction of
// at most maxHeadroom.
func checkHeadroom(frac float64) error {
	if frac < 0 || frac > maxHeadroom || math.IsNaN(frac) {
		return fmt.Errorf("--heap-headroom %g: want 0 (off) or a fraction of the live heap up to %d", frac, maxHeadroom)
	}
	return nil
}

// memoryLimit is the Go memory limit for a live heap of live bytes: live
// plus the larger of headroomFloor and frac of live. GOGC=100 leaves a
// heap as large again as the live one before it collects; a node's caches
// of a large cluster make that hundreds of MiB that only hold garbage.
func memoryLimit(live uint64, frac float64) int64 {
	return int64(live + max(headroomFloor, uint64(float64(live)*frac)))
}

// followLiveHeap sets the memory limit (see memoryLimit) after every
// garbage collection, from the live heap that collection found, until
// stop is called. The limit is soft: the collector runs sooner as the
// heap nears it, and lets the heap past it rather than thrash.
func followLiveHeap(frac float64) (stop func()) {
	var stopped atomic.Bool
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var arm func()
	arm = func() {
		// The finalizer of an object nothing references runs after the
		// collection that frees it: once per cycle, re-armed each time.
		runtime.SetFinalizer(new([32]byte), func(*[32]byte) {
			if stopped.Load() {
				return
			}
			metrics.Read(live)
			debug.SetMemoryLimit(memoryLimit(live[0].Value.Uint64(), frac))
			arm()
		})
	}
	arm()
	return func() { stopped.Store(true) }
}
