package testkit

import "runtime"

// LiveHeap is the heap in use after a garbage collection: what the
// process keeps, for benchmarks that report a structure's memory.
func LiveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
