package source

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weir-cni/weir/controller/kube"
	"github.com/weir-cni/weir/controller/snapshot"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// ErrNotSynced is returned by KubeSource.Objects before the caches have
// synced: a partial view would drop pods and policies.
var ErrNotSynced = errors.New("informer caches not synced")

// KubeSource is a snapshot.Source following the API server with shared informers for
// Pods (all namespaces), Namespaces, NetworkPolicies, Nodes and, when
// ClusterPolicies is set, ClusterNetworkPolicies. The caches
// hold only what the agent uses (see StripForCache). Event handlers only
// note which keys changed and kick, for changes that matter (see relevant);
// the agent's worker reads the changed objects from the caches (Changes),
// so reading a sync's input costs per change, not per object in the
// cluster (compiling it still visits every pod).
type KubeSource struct {
	client kube.Interface
	resync time.Duration

	pods       cache.SharedIndexInformer
	namespaces cache.SharedIndexInformer
	policies   cache.SharedIndexInformer
	nodes      cache.SharedIndexInformer

	synced  atomic.Bool
	started atomic.Bool
	// changes collects what changed for Changes.
	changes changeLog

	// OnWatchError, if set before Run, is told of failed lists and
	// watches (RBAC missing, watch expired, a list that failed); the
	// informers retry with backoff on their own. Use it for logs and error
	// metrics. Note: in client-go's watch-list mode (the default) refused
	// connections are retried inside the reflector and never reach it, so
	// it is not an API-server-reachability signal.
	OnWatchError func(resource string, err error)

	// ClusterPolicies, if set before Run, is the client KubeSource follows
	// ClusterNetworkPolicies with, if and while the API server serves them
	// (see clusterpolicies.go). Unset: Objects and Changes hold none.
	ClusterPolicies kube.ClusterPolicies
	// CRDRecheck is how often Run asks the API server whether it serves
	// ClusterNetworkPolicies (default 30s).
	CRDRecheck time.Duration
	// OnClusterPoliciesServed, if set before Run, is told whether the API
	// server serves ClusterNetworkPolicies: once at start, then at every
	// change. Use it for logs.
	OnClusterPoliciesServed func(served bool)
	// cnp is the running ClusterNetworkPolicy informer, nil when there is
	// none.
	cnp atomic.Pointer[cnpWatch]
}

// NewKubeSource makes the informers (resync 0 disables periodic resyncs,
// which this source would ignore anyway: they change nothing).
func NewKubeSource(client kube.Interface, resync time.Duration) *KubeSource {
	return &KubeSource{client: client, resync: resync,
		pods:       newInformer(client.Pods(metav1.NamespaceAll), client, &corev1.Pod{}, resync),
		namespaces: newInformer(client.Namespaces(), client, &corev1.Namespace{}, resync),
		policies:   newInformer(client.NetworkPolicies(metav1.NamespaceAll), client, &networkingv1.NetworkPolicy{}, resync),
		nodes:      newInformer(client.Nodes(), client, &corev1.Node{}, resync),
	}
}

// newInformer is an informer of lw's objects (of obj's type) caching them
// stripped (see StripForCache), without indexes: the caches are read by
// key or listed whole, and a namespace index would hold every key once
// more. client tells the reflector whether the API supports watch-list
// (client-go's fakes do not).
func newInformer[L runtime.Object](lw kube.Lister[L], client any, obj runtime.Object,
	resync time.Duration) cache.SharedIndexInformer {
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return lw.List(ctx, opts)
		},
		WatchFuncWithContext: lw.Watch,
	}, client), obj, resync, cache.Indexers{})
	// Only a started informer refuses a transform.
	_ = inf.SetTransform(StripForCache)
	return inf
}

// Synced reports whether every cache has synced.
func (s *KubeSource) Synced() bool { return s.synced.Load() }

// Run starts the informers, waits for every cache to sync, kicks once, and
// then kicks on every relevant add, update or delete until ctx ends. Events
// before the sync do not kick: the first kick covers them. With
// ClusterPolicies set, the caches include ClusterNetworkPolicies when the
// API server serves them, and Run keeps checking whether it does (see
// clusterpolicies.go). Run may be called once.
func (s *KubeSource) Run(ctx context.Context, kick func()) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("kube source: Run called twice")
	}
	var handlersSynced []cache.InformerSynced
	for _, r := range []struct {
		res  string
		kind int
		inf  cache.SharedIndexInformer
	}{
		{"pods", kindPods, s.pods}, {"namespaces", kindNamespaces, s.namespaces},
		{"networkpolicies", kindPolicies, s.policies}, {"nodes", kindNodes, s.nodes},
	} {
		reg, err := s.addHandlers(r.res, r.inf, s.handler(r.kind, &s.synced, kick))
		if err != nil {
			return err
		}
		handlersSynced = append(handlersSynced, reg.HasSynced)
	}
	ctx, cancel := context.WithCancel(ctx)
	var bg, informers sync.WaitGroup
	defer informers.Wait() // after cancel: the informers stop
	defer s.stopClusterPolicies()
	defer bg.Wait()
	defer cancel()
	for _, inf := range []cache.SharedIndexInformer{s.pods, s.namespaces, s.policies, s.nodes} {
		informers.Go(func() { inf.RunWithContext(ctx) })
		handlersSynced = append(handlersSynced, inf.HasSynced)
	}
	// Wait for the stores and for the handlers to have seen the initial
	// lists (those events do not kick), then kick once for all of them.
	if !cache.WaitForCacheSync(ctx.Done(), handlersSynced...) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("sync caches and event handlers: %w", ErrNotSynced)
	}
	if s.ClusterPolicies != nil {
		served := s.initClusterPolicies(ctx, kick)
		if ctx.Err() != nil {
			return nil
		}
		bg.Go(func() { s.followClusterPolicies(ctx, kick, served) })
	}
	s.synced.Store(true)
	kick()
	<-ctx.Done()
	return nil
}

// addHandlers adds handler to inf and, when OnWatchError is set, reports
// inf's failed lists and watches of resource to it. Call it before inf
// starts.
func (s *KubeSource) addHandlers(resource string, inf cache.SharedIndexInformer,
	handler cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	reg, err := inf.AddEventHandler(handler)
	if err != nil {
		return nil, fmt.Errorf("add %s event handler: %w", resource, err)
	}
	if s.OnWatchError != nil {
		report := s.OnWatchError
		err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			report(resource, err)
		})
		if err != nil {
			return nil, fmt.Errorf("set %s watch error handler: %w", resource, err)
		}
	}
	return reg, nil
}

// handler marks every change of kind for Changes and kicks for the ones
// that matter (see relevant). Until live is set (the caches have synced)
// it does nothing: the first Changes lists everything.
func (s *KubeSource) handler(kind int, live *atomic.Bool, kick func()) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if live.Load() {
				s.changes.mark(kind, obj)
				kick()
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			if live.Load() {
				s.changes.mark(kind, newObj)
				if relevant(oldObj, newObj) {
					kick()
				}
			}
		},
		DeleteFunc: func(obj any) {
			if live.Load() {
				s.changes.mark(kind, obj)
				if unwrapTombstone(obj) != nil {
					kick()
				}
			}
		},
	}
}

// cached lists inf's cache, which holds only T.
func cached[T any](inf cache.SharedIndexInformer) []T {
	objs := inf.GetStore().List()
	out := make([]T, 0, len(objs))
	for _, obj := range objs {
		if t, ok := obj.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// Objects lists the caches. The slices are fresh; the objects are shared
// with the cache and must not be modified.
func (s *KubeSource) Objects() (snapshot.Objects, error) {
	if !s.synced.Load() {
		return snapshot.Objects{}, ErrNotSynced
	}
	o := snapshot.Objects{
		Nodes:      cached[*corev1.Node](s.nodes),
		Namespaces: cached[*corev1.Namespace](s.namespaces),
		Pods:       cached[*snapshot.Pod](s.pods),
		Policies:   cached[*networkingv1.NetworkPolicy](s.policies),
	}
	if w := s.cnp.Load(); w != nil {
		o.ClusterPolicies = cached[*cnpv1beta1.ClusterNetworkPolicy](w.informer)
	}
	return o, nil
}

var (
	_ snapshot.Source    = (*KubeSource)(nil)
	_ snapshot.PodGetter = (*KubeSource)(nil)
)

// GetPod returns a pod from the cache or, when the cache does not have it
// yet (a pod being wired by CNI ADD may be newer than the last event), from
// the API server. Do not modify the result.
func (s *KubeSource) GetPod(ctx context.Context, namespace, name string) (*snapshot.Pod, error) {
	return s.GetPodUID(ctx, namespace, name, "")
}

// GetPodUID is GetPod for the pod with that uid ("" accepts any): a cached
// pod of the same name but another uid (the name was reused) sends the read
// to the API server, and a mismatch there is a NotFound error. A pod read
// from the API server is stripped like cached ones.
func (s *KubeSource) GetPodUID(ctx context.Context, namespace, name string, uid types.UID) (*snapshot.Pod, error) {
	if s.synced.Load() {
		obj, _, _ := s.pods.GetIndexer().GetByKey(cache.NewObjectName(namespace, name).String())
		if p, ok := obj.(*snapshot.Pod); ok && (uid == "" || p.UID == uid) {
			return p, nil
		}
	}
	p, err := s.client.Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
	}
	if uid != "" && p.UID != uid {
		return nil, fmt.Errorf("get pod %s/%s: uid %s, want %s: %w", namespace, name, p.UID, uid,
			apierrors.NewNotFound(corev1.Resource("pods"), name))
	}
	return snapshot.NewPod(p), nil
}

// unwrapTombstone returns the object of an event (a pod's metadata, see
// snapshot.Pod.GetObjectMeta), looking inside a DeletedFinalStateUnknown
// (the watch missed the delete and a relist found the object gone), or nil
// when it is neither a known kind nor a tombstone of one.
func unwrapTombstone(obj any) metav1.Object {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	switch o := obj.(type) {
	case *snapshot.Pod:
		return o.GetObjectMeta()
	case *corev1.Namespace, *corev1.Node, *networkingv1.NetworkPolicy, *cnpv1beta1.ClusterNetworkPolicy:
		return o.(metav1.Object)
	}
	return nil
}
