package controller

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/tools/cache"
)

// The kinds a KubeSource follows, as indexes into changeLog.dirty.
const (
	kindPods = iota
	kindNamespaces
	kindPolicies
	kindNodes
	numKinds
)

// changeLog collects, per kind, the keys of the objects that changed
// since the last Changes call. Event handlers only mark keys; Changes reads
// the objects from the caches, so it always hands over their latest state
// (a key deleted from the cache reads as nil).
type changeLog struct {
	mu     sync.Mutex
	dirty  [numKinds]map[string]struct{}
	listed bool // the first, full Changes happened
}

func (l *changeLog) mark(kind int, obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return // not an object: nothing a cache holds under a key
	}
	l.mu.Lock()
	if l.dirty[kind] == nil {
		l.dirty[kind] = map[string]struct{}{}
	}
	l.dirty[kind][key] = struct{}{}
	l.mu.Unlock()
}

// take returns the marked keys and forgets them, and whether this is the
// first call.
func (l *changeLog) take() ([numKinds]map[string]struct{}, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d, first := l.dirty, !l.listed
	l.dirty, l.listed = [numKinds]map[string]struct{}{}, true
	return d, first
}

// giveBack marks keys again after a failed Changes.
func (l *changeLog) giveBack(d [numKinds]map[string]struct{}, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if first {
		l.listed = false
	}
	for kind, keys := range d {
		for key := range keys {
			if l.dirty[kind] == nil {
				l.dirty[kind] = map[string]struct{}{}
			}
			l.dirty[kind][key] = struct{}{}
		}
	}
}

var _ ChangeSource = (*KubeSource)(nil)

// Changes returns what changed since the previous call: the first call
// lists every cache (Full), later ones read only the objects whose events
// arrived since. A change marked while Changes runs is handed over again
// by the next call, which is harmless: Changes carries states, not events.
func (s *KubeSource) Changes() (Changes, error) {
	if !s.synced.Load() {
		return Changes{}, ErrNotSynced
	}
	d, first := s.changes.take()
	c, err := s.read(d, first)
	if err != nil {
		s.changes.giveBack(d, first)
		return Changes{}, err
	}
	return c, nil
}

func (s *KubeSource) read(d [numKinds]map[string]struct{}, first bool) (Changes, error) {
	if first {
		objs, err := s.Objects()
		return Changes{Full: true, Objects: objs}, err
	}
	var c Changes
	var err error
	if c.Pods, err = current[*corev1.Pod](s.pods, d[kindPods]); err != nil {
		return Changes{}, fmt.Errorf("read changed pods: %w", err)
	}
	if c.Namespaces, err = current[*corev1.Namespace](s.namespaces, d[kindNamespaces]); err != nil {
		return Changes{}, fmt.Errorf("read changed namespaces: %w", err)
	}
	if c.Policies, err = current[*networkingv1.NetworkPolicy](s.policies, d[kindPolicies]); err != nil {
		return Changes{}, fmt.Errorf("read changed networkpolicies: %w", err)
	}
	if c.Nodes, err = current[*corev1.Node](s.nodes, d[kindNodes]); err != nil {
		return Changes{}, fmt.Errorf("read changed nodes: %w", err)
	}
	return c, nil
}

// current reads keys from inf's cache: the object, or nil when it is gone.
func current[T comparable](inf cache.SharedIndexInformer, keys map[string]struct{}) (map[string]T, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	out := make(map[string]T, len(keys))
	for key := range keys {
		obj, ok, err := inf.GetIndexer().GetByKey(key)
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", key, err)
		}
		var t T
		if ok {
			if t, ok = obj.(T); !ok {
				return nil, fmt.Errorf("get %s: unexpected %T in the cache", key, obj)
			}
		}
		out[key] = t
	}
	return out, nil
}
