// Package kube is weir-agent's API client: typed clients of only the
// resources the agent reads and writes, over a scheme of only their API
// groups. client-go's Clientset, its informer factory and listers import
// k8s.io/client-go/kubernetes/scheme, which registers every built-in API
// group at start: megabytes of the binary's pages and of heap the agent
// never uses. The clients here are client-go's generic ones (gentype), as
// the Clientset's are, with the same shared transport and rate limiter.
package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Scheme holds the API groups the agent uses, and nothing else.
var Scheme = runtime.NewScheme()

var (
	codecs         = serializer.NewCodecFactory(Scheme)
	parameterCodec = runtime.NewParameterCodec(Scheme)
)

func init() {
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	utilruntime.Must(corev1.AddToScheme(Scheme))
	utilruntime.Must(networkingv1.AddToScheme(Scheme))
	utilruntime.Must(coordinationv1.AddToScheme(Scheme))
	utilruntime.Must(authnv1.AddToScheme(Scheme))
	utilruntime.Must(authzv1.AddToScheme(Scheme))
	utilruntime.Must(cnpv1beta1.AddToScheme(Scheme))
}

// Lister lists and watches a resource (what an informer needs).
type Lister[L runtime.Object] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// Reader reads a resource: one object by name, or all of them.
type Reader[T, L runtime.Object] interface {
	Lister[L]
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
}

// Creator creates objects (reviews that the API server answers in place).
type Creator[T runtime.Object] interface {
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
}

// LeaseClient reads and writes the Leases of a namespace.
type LeaseClient interface {
	Creator[*coordinationv1.Lease]
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
}

// StatusWriter writes the status subresource of a resource.
type StatusWriter[T runtime.Object] interface {
	UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// Interface is what the agent follows: the resources its policy source
// reads. *Client implements it (client-go's Clientset does through an
// adapter, for tests).
type Interface interface {
	Pods(namespace string) Reader[*corev1.Pod, *corev1.PodList]
	Namespaces() Lister[*corev1.NamespaceList]
	Nodes() Lister[*corev1.NodeList]
	NetworkPolicies(namespace string) Lister[*networkingv1.NetworkPolicyList]
}

// ClusterPolicies reads ClusterNetworkPolicies and asks the API server
// which resources a group version serves (the CRD may be missing).
type ClusterPolicies interface {
	Lister[*cnpv1beta1.ClusterNetworkPolicyList]
	ServerResources(ctx context.Context, groupVersion string) (*metav1.APIResourceList, error)
}

// Client reaches the API server's core/v1, networking.k8s.io/v1,
// coordination.k8s.io/v1, authentication.k8s.io/v1,
// authorization.k8s.io/v1 and policy.networking.k8s.io/v1beta1 groups.
type Client struct {
	core, networking, coordination, authn, authz, cnp *rest.RESTClient
}

var _ Interface = (*Client)(nil)

// NewForConfig makes a Client: one transport and one rate limiter (from
// cfg's QPS and Burst) shared by every group, as client-go's Clientset
// shares them.
func NewForConfig(cfg *rest.Config) (*Client, error) {
	c := *cfg
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if c.RateLimiter == nil && c.QPS > 0 {
		if c.Burst <= 0 {
			return nil, fmt.Errorf("api client: burst must be positive when QPS (%g) is set", c.QPS)
		}
		c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.QPS, c.Burst)
	}
	httpClient, err := rest.HTTPClientFor(&c)
	if err != nil {
		return nil, fmt.Errorf("api client transport: %w", err)
	}
	group := func(gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
		g := c
		g.GroupVersion, g.APIPath = &gv, apiPath
		g.NegotiatedSerializer = rest.CodecFactoryForGeneratedClient(Scheme, codecs).WithoutConversion()
		rc, err := rest.RESTClientForConfigAndClient(&g, httpClient)
		if err != nil {
			return nil, fmt.Errorf("api client for %s: %w", gv, err)
		}
		return rc, nil
	}
	var out Client
	for _, g := range []struct {
		rc   **rest.RESTClient
		gv   schema.GroupVersion
		path string
	}{
		{&out.core, corev1.SchemeGroupVersion, "/api"},
		{&out.networking, networkingv1.SchemeGroupVersion, "/apis"},
		{&out.coordination, coordinationv1.SchemeGroupVersion, "/apis"},
		{&out.authn, authnv1.SchemeGroupVersion, "/apis"},
		{&out.authz, authzv1.SchemeGroupVersion, "/apis"},
		{&out.cnp, cnpv1beta1.SchemeGroupVersion, "/apis"},
	} {
		if *g.rc, err = group(g.gv, g.path); err != nil {
			return nil, err
		}
	}
	return &out, nil
}

// listClient is a namespaced (namespace "" for all, or for cluster-scoped
// resources) client of resource in rc's group; builtin types prefer
// protobuf, as client-go's own clients do.
func listClient[T interface {
	runtime.Object
	metav1.Object
}, L runtime.Object](rc *rest.RESTClient, resource, namespace string, builtin bool) *gentype.ClientWithList[T, L] {
	var opts []gentype.Option[T]
	if builtin {
		opts = append(opts, gentype.PrefersProtobuf[T]())
	}
	return gentype.NewClientWithList(resource, rc, parameterCodec, namespace,
		newOf[T], newOf[L], opts...)
}

// newOf returns a new zero *E as T (T is *E).
func newOf[T runtime.Object]() T {
	return reflect.New(reflect.TypeFor[T]().Elem()).Interface().(T)
}

// Pods is the pods of namespace ("": every namespace).
func (c *Client) Pods(namespace string) Reader[*corev1.Pod, *corev1.PodList] {
	return listClient[*corev1.Pod, *corev1.PodList](c.core, "pods", namespace, true)
}

// Namespaces is the cluster's namespaces.
func (c *Client) Namespaces() Lister[*corev1.NamespaceList] {
	return listClient[*corev1.Namespace, *corev1.NamespaceList](c.core, "namespaces", "", true)
}

// Nodes is the cluster's nodes.
func (c *Client) Nodes() Lister[*corev1.NodeList] {
	return listClient[*corev1.Node, *corev1.NodeList](c.core, "nodes", "", true)
}

// NetworkPolicies is the NetworkPolicies of namespace ("": every
// namespace).
func (c *Client) NetworkPolicies(namespace string) Lister[*networkingv1.NetworkPolicyList] {
	return listClient[*networkingv1.NetworkPolicy, *networkingv1.NetworkPolicyList](c.networking,
		"networkpolicies", namespace, true)
}

// Leases is the Leases of namespace.
func (c *Client) Leases(namespace string) LeaseClient {
	return listClient[*coordinationv1.Lease, *coordinationv1.LeaseList](c.coordination, "leases", namespace, true)
}

// TokenReviews creates TokenReviews.
func (c *Client) TokenReviews() Creator[*authnv1.TokenReview] {
	return gentype.NewClient("tokenreviews", c.authn, parameterCodec, "",
		newOf[*authnv1.TokenReview], gentype.PrefersProtobuf[*authnv1.TokenReview]())
}

// SubjectAccessReviews creates SubjectAccessReviews.
func (c *Client) SubjectAccessReviews() Creator[*authzv1.SubjectAccessReview] {
	return gentype.NewClient("subjectaccessreviews", c.authz, parameterCodec, "",
		newOf[*authzv1.SubjectAccessReview], gentype.PrefersProtobuf[*authzv1.SubjectAccessReview]())
}

// ClusterNetworkPolicyStatus writes ClusterNetworkPolicies' status.
func (c *Client) ClusterNetworkPolicyStatus() StatusWriter[*cnpv1beta1.ClusterNetworkPolicy] {
	return c.clusterPolicies()
}

// ClusterNetworkPolicies reads ClusterNetworkPolicies and the API
// server's discovery of their group.
func (c *Client) ClusterNetworkPolicies() ClusterPolicies {
	return clusterPolicies{c.clusterPolicies(), c.cnp}
}

func (c *Client) clusterPolicies() *gentype.ClientWithList[*cnpv1beta1.ClusterNetworkPolicy, *cnpv1beta1.ClusterNetworkPolicyList] {
	return listClient[*cnpv1beta1.ClusterNetworkPolicy, *cnpv1beta1.ClusterNetworkPolicyList](c.cnp,
		"clusternetworkpolicies", "", false)
}

type clusterPolicies struct {
	*gentype.ClientWithList[*cnpv1beta1.ClusterNetworkPolicy, *cnpv1beta1.ClusterNetworkPolicyList]
	rc *rest.RESTClient
}

// ServerResources is discovery's list of the resources of groupVersion
// ("group/version"); a group version the server does not serve is a
// NotFound error.
func (c clusterPolicies) ServerResources(ctx context.Context, groupVersion string) (*metav1.APIResourceList, error) {
	raw, err := c.rc.Get().AbsPath("/apis", groupVersion).Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("decode discovery of %s: %w", groupVersion, err)
	}
	return &list, nil
}
