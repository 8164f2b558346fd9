package snapshot

import (
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/weir-cni/weir/policy"
)

// maxShared bounds a sharedTable: past it the table starts over. Pods
// keep the values they were given (they are never modified); only new
// pods stop sharing with older ones until the table fills again. Values
// that stop being used (a Deployment's pod-template-hash after a rollout)
// thus cost at most the table.
const maxShared = 1 << 16

// sharedTable holds one copy of each distinct value that NewPod met. Pods
// of one workload have the same labels and container ports, so a cluster
// of 10,000 pods holds a few hundred distinct label sets, and a copy of a
// few labels costs ≈300 bytes a pod. The compiler compares every pod's
// labels and ports on every sync: shared copies stay in the CPU's caches,
// and strings that are the same memory compare without being read. Safe
// for concurrent use (informers of several sources may strip at once).
type sharedTable[T any] struct {
	mu    sync.Mutex
	byKey map[string]T
	// clone copies a value the table keeps, so that it shares nothing
	// with the caller's.
	clone func(T) T
}

// Each pod's labels and named ports.
var (
	labelSets = sharedTable[map[string]string]{clone: maps.Clone[map[string]string]}
	portLists = sharedTable[[]policy.ContainerPort]{clone: slices.Clone[[]policy.ContainerPort]}
)

// get returns the table's value whose key is key, adding a copy of v
// when there is none. The result must not be modified.
func (t *sharedTable[T]) get(key string, v T) T {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.byKey[key]; ok {
		return s
	}
	if t.byKey == nil || len(t.byKey) >= maxShared {
		t.byKey = map[string]T{}
	}
	v = t.clone(v)
	t.byKey[key] = v
	return v
}

// labelsKey is a canonical text of a label set ("" for none): keys
// sorted, each key and value preceded by its length, so that no two sets
// share a text whatever bytes they hold (manifests are not validated).
func labelsKey(l map[string]string) string {
	if len(l) == 0 {
		return ""
	}
	keys := make([]string, 0, len(l))
	n := 0
	for k, v := range l {
		keys = append(keys, k)
		n += len(k) + len(v) + 8
	}
	slices.Sort(keys)
	b := make([]byte, 0, n)
	for _, k := range keys {
		b = appendField(b, k)
		b = appendField(b, l[k])
	}
	return string(b)
}

// portsKey is a canonical text of a pod's named ports, in their order.
func portsKey(ps []policy.ContainerPort) string {
	if len(ps) == 0 {
		return ""
	}
	var b []byte
	for _, p := range ps {
		b = appendField(b, p.Name)
		b = appendField(b, p.Protocol)
		b = strconv.AppendInt(b, int64(p.Port), 10)
		b = append(b, ' ')
	}
	return string(b)
}

// appendField appends s preceded by its length.
func appendField(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}
