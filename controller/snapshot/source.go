package snapshot

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Objects is the raw cluster state a source collected.
type Objects struct {
	Nodes      []*corev1.Node
	Namespaces []*corev1.Namespace
	Pods       []*Pod
	Policies   []*networkingv1.NetworkPolicy
	// ClusterPolicies are the ClusterNetworkPolicies (cluster-scoped,
	// keyed by name); none when the API server does not serve them.
	ClusterPolicies []*cnpv1beta1.ClusterNetworkPolicy
}

// Changes is what a source saw change since the previous Changes call:
// for each changed key (client-go's cache key, cache.ObjectName's text:
// namespace/name, or the name of a cluster-scoped object) the object as it
// is now, or nil when it is gone. When Full is set, Objects holds
// everything instead and replaces the whole view.
type Changes struct {
	Full       bool
	Objects    Objects
	Pods       map[string]*Pod
	Namespaces map[string]*corev1.Namespace
	Policies   map[string]*networkingv1.NetworkPolicy
	Nodes      map[string]*corev1.Node
	// ClusterPolicies are keyed by name (they are cluster-scoped).
	ClusterPolicies map[string]*cnpv1beta1.ClusterNetworkPolicy
}

// Source yields the current cluster objects. Sources only signal changes;
// the agent's single worker decides when to read.
type Source interface {
	// Objects returns a complete, consistent view, or an error; on error
	// the agent keeps the kernel as it is.
	Objects() (Objects, error)
	// Run watches for changes and calls kick for each; it returns when ctx
	// ends. It must not call kick before its view is complete.
	Run(ctx context.Context, kick func()) error
}

// ChangeSource is a Source that tells what changed, so that reading the
// cluster costs in proportion to the changes rather than to the cluster
// (the compiler, and the overlay when a pod is announced, still visit
// every pod). Changes has one
// consumer: each call hands over what changed since the previous one, and
// the first call is Full.
type ChangeSource interface {
	Source
	Changes() (Changes, error)
}

// PodGetter is implemented by sources that can fetch one pod directly when
// their cache is behind (the API server source).
type PodGetter interface {
	GetPod(ctx context.Context, namespace, name string) (*Pod, error)
}
