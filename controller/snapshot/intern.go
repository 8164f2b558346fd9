package snapshot

import (
	"slices"
	"strconv"

	"github.com/weir-cni/weir/policy"
)

// interned shares one copy of a value among the pods that hold equal ones.
// Pods of one workload have the same labels and container ports, so a
// cluster of 10,000 pods holds a few hundred distinct label sets. The
// compiler compares every pod's labels and ports on every sync: shared
// copies stay in the CPU's caches, and strings that are the same memory
// compare without being read.
type interned[T any] struct {
	byKey map[string]*internedValue[T]
}

type internedValue[T any] struct {
	v    T
	refs int
}

// get returns the shared copy of the value whose key is key, making it
// from v when there is none, and counts a reference to it.
func (in *interned[T]) get(key string, v T) T {
	if in.byKey == nil {
		in.byKey = map[string]*internedValue[T]{}
	}
	e := in.byKey[key]
	if e == nil {
		e = &internedValue[T]{v: v}
		in.byKey[key] = e
	}
	e.refs++
	return e.v
}

// release drops a reference got under key.
func (in *interned[T]) release(key string) {
	if e := in.byKey[key]; e != nil {
		if e.refs--; e.refs <= 0 {
			delete(in.byKey, key)
		}
	}
}

// LabelsKey is a canonical text of a label set ("" for none): keys
// sorted, each key and value preceded by its length, so that no two sets
// share a text whatever bytes they hold (manifests are not validated).
func LabelsKey(l map[string]string) string {
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

// podValues interns the labels and ports of the view's pods.
type podValues struct {
	labels interned[map[string]string]
	ports  interned[[]policy.ContainerPort]
}

// internKeys are the keys a pod's shared values were got under.
type internKeys struct{ labels, ports string }

// intern replaces p's labels and ports with shared copies and returns the
// keys to release them with. Empty values stay as they are.
func (pv *podValues) intern(p *policy.Pod) internKeys {
	var k internKeys
	if len(p.Labels) > 0 {
		k.labels = LabelsKey(p.Labels)
		p.Labels = pv.labels.get(k.labels, p.Labels)
	}
	if len(p.Ports) > 0 {
		k.ports = portsKey(p.Ports)
		p.Ports = pv.ports.get(k.ports, p.Ports)
	}
	return k
}

func (pv *podValues) release(k internKeys) {
	if k.labels != "" {
		pv.labels.release(k.labels)
	}
	if k.ports != "" {
		pv.ports.release(k.ports)
	}
}
