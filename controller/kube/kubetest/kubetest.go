// Package kubetest adapts client-go's Clientset and the network-policy-api
// clientset (real or fake) to package kube's interfaces, for tests: the
// agent itself does not link those clientsets (see package kube).
package kubetest

import (
	"context"

	"github.com/weir-cni/weir/controller/kube"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/watchlist"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	cnptyped "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/typed/apis/v1beta1"
)

// clientset is a kube.Interface over client-go's Clientset.
type clientset struct{ cs kubernetes.Interface }

// Clientset adapts cs to kube.Interface.
func Clientset(cs kubernetes.Interface) kube.Interface { return clientset{cs} }

func (c clientset) Pods(namespace string) kube.Reader[*corev1.Pod, *corev1.PodList] {
	return c.cs.CoreV1().Pods(namespace)
}

func (c clientset) Namespaces() kube.Lister[*corev1.NamespaceList] { return c.cs.CoreV1().Namespaces() }

func (c clientset) Nodes() kube.Lister[*corev1.NodeList] { return c.cs.CoreV1().Nodes() }

func (c clientset) NetworkPolicies(namespace string) kube.Lister[*networkingv1.NetworkPolicyList] {
	return c.cs.NetworkingV1().NetworkPolicies(namespace)
}

// IsWatchListSemanticsUnSupported passes on whether cs supports
// watch-list (client-go's fakes do not), for the informers' reflectors.
func (c clientset) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(c.cs)
}

// clusterPolicies is a kube.ClusterPolicies over the network-policy-api
// clientset.
type clusterPolicies struct {
	cnptyped.ClusterNetworkPolicyInterface
	cs cnpclient.Interface
}

// ClusterPolicies adapts cs to kube.ClusterPolicies.
func ClusterPolicies(cs cnpclient.Interface) kube.ClusterPolicies {
	return clusterPolicies{cs.PolicyV1beta1().ClusterNetworkPolicies(), cs}
}

func (c clusterPolicies) ServerResources(ctx context.Context, groupVersion string) (*metav1.APIResourceList, error) {
	return discovery.ToDiscoveryInterfaceWithContext(c.cs.Discovery()).
		ServerResourcesForGroupVersionWithContext(ctx, groupVersion)
}

// IsWatchListSemanticsUnSupported: see clientset's.
func (c clusterPolicies) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(c.cs)
}

var _ kube.ClusterPolicies = clusterPolicies{}
