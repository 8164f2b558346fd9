package source

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// ClusterNetworkPolicies come from a CRD, which a cluster may not have,
// may install after the agent started, or may remove. KubeSource asks the
// API server's discovery whether it serves them: at start, before it
// reports the caches synced (retrying until the server answers), and then
// every CRDRecheck. While it does, an informer on ClusterPolicies follows
// them; when that changes, the informer starts (and is
// synced before its objects count) or stops, and the next Changes is a
// full listing, with or without them.

// clusterPoliciesResource is the CRD's plural, as discovery lists it.
const clusterPoliciesResource = "clusternetworkpolicies"

// defaultCRDRecheck is CRDRecheck's default.
const defaultCRDRecheck = 30 * time.Second

// cnpWatch is one run of the ClusterNetworkPolicy informer.
type cnpWatch struct {
	informer cache.SharedIndexInformer
	reg      cache.ResourceEventHandlerRegistration
	cancel   context.CancelFunc
	// done is closed when the informer has stopped.
	done chan struct{}
	// live is set once the watch is KubeSource's: its events count.
	live atomic.Bool
}

// stop ends the informer and waits for it.
func (w *cnpWatch) stop() {
	w.live.Store(false)
	w.cancel()
	<-w.done
}

// ClusterPolicy returns the cached ClusterNetworkPolicy name, nil when the
// cache does not hold it or there is no cache (the API server does not
// serve them). Do not modify it.
func (s *KubeSource) ClusterPolicy(name string) *cnpv1beta1.ClusterNetworkPolicy {
	w := s.cnp.Load()
	if w == nil {
		return nil
	}
	obj, _, _ := w.informer.GetIndexer().GetByKey(name)
	p, _ := obj.(*cnpv1beta1.ClusterNetworkPolicy)
	return p
}

func (s *KubeSource) crdRecheck() time.Duration {
	if s.CRDRecheck > 0 {
		return s.CRDRecheck
	}
	return defaultCRDRecheck
}

// servesClusterPolicies asks the API server's discovery whether it serves
// ClusterNetworkPolicies (v1beta1); an error means it did not answer.
func (s *KubeSource) servesClusterPolicies(ctx context.Context) (bool, error) {
	gv := cnpv1beta1.GroupVersion.String()
	list, err := s.ClusterPolicies.ServerResources(ctx, gv)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discover %s: %w", gv, err)
	}
	return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool {
		return r.Name == clusterPoliciesResource
	}), nil
}

// initClusterPolicies finds out whether the API server serves
// ClusterNetworkPolicies, asking until it answers, and if it does starts
// following them and waits for their cache. It reports whether it follows
// them (false when ctx ends first).
func (s *KubeSource) initClusterPolicies(ctx context.Context, kick func()) bool {
	backoff := time.Second
	for {
		served, err := s.servesClusterPolicies(ctx)
		if err == nil {
			served = served && s.startClusterPolicies(ctx, kick)
			if ctx.Err() == nil {
				s.tellServed(served)
			}
			return served
		}
		s.reportWatchError(err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.crdRecheck())
	}
}

// followClusterPolicies checks every CRDRecheck whether the API server
// still serves ClusterNetworkPolicies (served: whether it did), starts or
// stops the informer when that changed, and then has the next Changes list
// everything and kicks. It returns when ctx ends.
func (s *KubeSource) followClusterPolicies(ctx context.Context, kick func(), served bool) {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		now, err := s.servesClusterPolicies(ctx)
		switch {
		case err != nil:
			s.reportWatchError(err)
			return
		case now == served:
			return
		case !now:
			s.stopClusterPolicies()
		case !s.startClusterPolicies(ctx, kick):
			return // gone again before its cache synced, or ctx ended
		}
		served = now
		s.tellServed(served)
		s.changes.relist()
		kick()
	}, s.crdRecheck())
}

// startClusterPolicies starts the informer and waits for its cache and
// handler to sync, rechecking every CRDRecheck that the CRD is still
// served; then the watch is KubeSource's. It reports whether it is.
func (s *KubeSource) startClusterPolicies(ctx context.Context, kick func()) bool {
	wctx, cancel := context.WithCancel(ctx)
	w := &cnpWatch{cancel: cancel, done: make(chan struct{}),
		informer: newInformer(s.ClusterPolicies, s.ClusterPolicies, &cnpv1beta1.ClusterNetworkPolicy{}, s.resync)}
	reg, err := s.addHandlers(clusterPoliciesResource, w.informer, s.handler(kindClusterPolicies, &w.live, kick))
	if err != nil {
		cancel()
		s.reportWatchError(err)
		return false
	}
	w.reg = reg
	go func() {
		defer close(w.done)
		w.informer.RunWithContext(wctx)
	}()
	if !s.syncWatch(ctx, w) {
		w.stop()
		return false
	}
	w.live.Store(true)
	s.cnp.Store(w)
	return true
}

// syncWatch waits for w's cache and handler. It gives up when ctx ends or
// the API server, asked every CRDRecheck meanwhile, no longer serves
// ClusterNetworkPolicies.
func (s *KubeSource) syncWatch(ctx context.Context, w *cnpWatch) bool {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, s.crdRecheck())
		synced := cache.WaitForCacheSync(waitCtx.Done(), w.informer.HasSynced, w.reg.HasSynced)
		cancel()
		if synced {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if served, err := s.servesClusterPolicies(ctx); err == nil && !served {
			return false
		}
	}
}

// stopClusterPolicies stops following ClusterNetworkPolicies, if it does.
func (s *KubeSource) stopClusterPolicies() {
	if w := s.cnp.Swap(nil); w != nil {
		w.stop()
	}
}

func (s *KubeSource) tellServed(served bool) {
	if s.OnClusterPoliciesServed != nil {
		s.OnClusterPoliciesServed(served)
	}
}

func (s *KubeSource) reportWatchError(err error) {
	if s.OnWatchError != nil {
		s.OnWatchError(clusterPoliciesResource, err)
	}
}
