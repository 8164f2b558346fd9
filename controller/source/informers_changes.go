package source

import (
	"sync"

	"github.com/weir-cni/weir/controller/snapshot"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/tools/cache"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// The kinds a KubeSource follows, as indexes into changeLog.dirty.
const (
	kindPods = iota
	kindNamespaces
	kindPolicies
	kindNodes
	kindClusterPolicies
	numKinds
)

// changeLog collects, per kind, the keys of the objects that changed
// since the last Changes call. Event handlers only mark keys; Changes reads
// the objects from the caches, so it always hands over their latest state
// (a key deleted from the cache reads as nil).
type changeLog struct {
	mu    sync.Mutex
	dirty [numKinds]map[string]struct{}
	// listed is set while no full listing is due: from the first take
	// until a kind's informer starts or stops (relist), or a listing fails.
	listed bool
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

// take returns the marked keys and forgets them, and whether a full
// listing is due instead.
func (l *changeLog) take() (d [numKinds]map[string]struct{}, full bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d, full = l.dirty, !l.listed
	l.dirty, l.listed = [numKinds]map[string]struct{}{}, true
	return d, full
}

// relist has the next take ask for a full listing.
func (l *changeLog) relist() {
	l.mu.Lock()
	l.listed = false
	l.mu.Unlock()
}

var _ snapshot.ChangeSource = (*KubeSource)(nil)

// Changes returns what changed since the previous call: the first call
// lists every cache (Full), and so does the first after the
// ClusterNetworkPolicy informer started or stopped; others read only the
// objects whose events arrived since. A change marked while Changes runs
// is handed over again by the next call, which is harmless: Changes
// carries states, not events.
func (s *KubeSource) Changes() (snapshot.Changes, error) {
	if !s.synced.Load() {
		return snapshot.Changes{}, ErrNotSynced
	}
	d, full := s.changes.take()
	if full {
		// The listing holds every change taken; if it fails, the next
		// call lists again.
		objs, err := s.Objects()
		if err != nil {
			s.changes.relist()
			return snapshot.Changes{}, err
		}
		return snapshot.Changes{Full: true, Objects: objs}, nil
	}
	var cnps cache.SharedIndexInformer
	if w := s.cnp.Load(); w != nil {
		cnps = w.informer
	}
	return snapshot.Changes{
		Pods:            current[*snapshot.Pod](s.pods, d[kindPods]),
		Namespaces:      current[*corev1.Namespace](s.namespaces, d[kindNamespaces]),
		Policies:        current[*networkingv1.NetworkPolicy](s.policies, d[kindPolicies]),
		Nodes:           current[*corev1.Node](s.nodes, d[kindNodes]),
		ClusterPolicies: current[*cnpv1beta1.ClusterNetworkPolicy](cnps, d[kindClusterPolicies]),
	}, nil
}

// current reads keys from inf's cache: the object, or nil when it is gone
// (or inf is nil: the informer stopped). The cache's GetByKey never fails,
// and an informer's cache holds only its type.
func current[T comparable](inf cache.SharedIndexInformer, keys map[string]struct{}) map[string]T {
	if len(keys) == 0 {
		return nil
	}
	out := make(map[string]T, len(keys))
	for key := range keys {
		var obj any
		if inf != nil {
			obj, _, _ = inf.GetIndexer().GetByKey(key)
		}
		t, _ := obj.(T) // nil when gone
		out[key] = t
	}
	return out
}
