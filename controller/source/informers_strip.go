package source

import (
	"maps"
	"reflect"
	"slices"

	"github.com/weir-cni/weir/controller/snapshot"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// lastApplied is kubectl's copy of the whole object: large and unused.
const lastApplied = corev1.LastAppliedConfigAnnotation

// StripForCache is the informers' transform: it returns a slim copy of a
// Pod, Node, Namespace, NetworkPolicy or ClusterNetworkPolicy holding only
// what the agent uses, so a node's cache of every pod in the cluster stays
// small. Everywhere: managedFields and kubectl's last-applied annotation
// go. A Pod becomes a snapshot.Pod (see snapshot.NewPod). Nodes keep
// labels, spec.podCIDR(s) and status.addresses (heartbeats and images
// go). Namespaces keep metadata
// and status.phase. Policies keep their spec; ClusterNetworkPolicies their
// spec and status (the status writer reads and updates its condition
// there). Other values (tombstones included) pass unchanged. It is
// idempotent, as client-go requires.
func StripForCache(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return snapshot.NewPod(o), nil
	case *corev1.Node:
		n := &corev1.Node{TypeMeta: o.TypeMeta, ObjectMeta: slimMeta(o.ObjectMeta, false)}
		n.Spec.PodCIDR, n.Spec.PodCIDRs = o.Spec.PodCIDR, o.Spec.PodCIDRs
		n.Status.Addresses = o.Status.Addresses
		return n, nil
	case *corev1.Namespace:
		return &corev1.Namespace{TypeMeta: o.TypeMeta, ObjectMeta: slimMeta(o.ObjectMeta, true),
			Status: corev1.NamespaceStatus{Phase: o.Status.Phase}}, nil
	case *networkingv1.NetworkPolicy:
		return &networkingv1.NetworkPolicy{TypeMeta: o.TypeMeta, ObjectMeta: slimMeta(o.ObjectMeta, true), Spec: o.Spec}, nil
	case *cnpv1beta1.ClusterNetworkPolicy:
		return &cnpv1beta1.ClusterNetworkPolicy{TypeMeta: o.TypeMeta, ObjectMeta: slimMeta(o.ObjectMeta, true),
			Spec: o.Spec, Status: o.Status}, nil
	}
	return obj, nil
}

// slimMeta drops managedFields and owner references, and the annotations
// (all of them, or only kubectl's last-applied copy when keepAnnotations).
func slimMeta(m metav1.ObjectMeta, keepAnnotations bool) metav1.ObjectMeta {
	m.ManagedFields = nil
	m.OwnerReferences = nil
	switch {
	case !keepAnnotations:
		m.Annotations = nil
	case m.Annotations[lastApplied] != "":
		m.Annotations = maps.Clone(m.Annotations)
		delete(m.Annotations, lastApplied)
		if len(m.Annotations) == 0 {
			m.Annotations = nil
		}
	}
	return m
}

// relevant reports whether an update changes anything the agent acts on,
// so kubelet status heartbeats and periodic resyncs do not wake the worker.
// Unknown kinds count as relevant.
func relevant(oldObj, newObj any) bool {
	om, nm := unwrapTombstone(oldObj), unwrapTombstone(newObj)
	if om == nil || nm == nil {
		return true
	}
	if om.GetResourceVersion() != "" && om.GetResourceVersion() == nm.GetResourceVersion() {
		return false // a resync: nothing changed
	}
	if (om.GetDeletionTimestamp() == nil) != (nm.GetDeletionTimestamp() == nil) {
		return true
	}
	switch o := oldObj.(type) {
	case *snapshot.Pod:
		n, ok := newObj.(*snapshot.Pod)
		return !ok || podChanged(o, n)
	case *corev1.Namespace:
		n, ok := newObj.(*corev1.Namespace)
		return !ok || !maps.Equal(o.Labels, n.Labels)
	case *corev1.Node:
		n, ok := newObj.(*corev1.Node)
		return !ok || !maps.Equal(o.Labels, n.Labels) || o.Spec.PodCIDR != n.Spec.PodCIDR ||
			!reflect.DeepEqual(o.Spec.PodCIDRs, n.Spec.PodCIDRs) ||
			!reflect.DeepEqual(o.Status.Addresses, n.Status.Addresses)
	case *networkingv1.NetworkPolicy:
		n, ok := newObj.(*networkingv1.NetworkPolicy)
		return !ok || !reflect.DeepEqual(o.Spec, n.Spec)
	case *cnpv1beta1.ClusterNetworkPolicy:
		// A status write (the agents' own) changes nothing enforced.
		n, ok := newObj.(*cnpv1beta1.ClusterNetworkPolicy)
		return !ok || !reflect.DeepEqual(o.Spec, n.Spec)
	}
	return true
}

// podChanged compares what the snapshot takes from a pod, plus its node and
// hostNetwork (which decide where it is enforced) and phase.
func podChanged(o, n *snapshot.Pod) bool {
	return o.UID != n.UID || o.NodeName != n.NodeName || o.HostNetwork != n.HostNetwork ||
		o.Phase != n.Phase || !maps.Equal(o.Labels, n.Labels) || !slices.Equal(o.IPs, n.IPs) ||
		!slices.Equal(o.Ports, n.Ports)
}

var _ cache.TransformFunc = StripForCache
