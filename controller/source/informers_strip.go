package source

import (
	"maps"
	"reflect"
	"slices"

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
// go. Pods keep their metadata (labels, uid, deletion timestamp),
// spec.nodeName, hostNetwork, the named ports of their (init) containers
// (in one unnamed container, see namedPorts), and status phase and
// podIPs (podIP when podIPs is empty); annotations, owner references and
// hostIPs go; equal label sets are one map (see labelSets). Nodes keep labels, spec.podCIDR(s) and
// status.addresses (heartbeats and images go). Namespaces keep metadata
// and status.phase. Policies keep their spec; ClusterNetworkPolicies their
// spec and status (the status writer reads and updates its condition
// there). Other values (tombstones included) pass unchanged. It is
// idempotent, as client-go requires.
func StripForCache(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return stripPod(o), nil
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

func stripPod(o *corev1.Pod) *corev1.Pod {
	p := &corev1.Pod{TypeMeta: o.TypeMeta, ObjectMeta: slimMeta(o.ObjectMeta, false)}
	p.Labels = labelSets.shared(p.Labels)
	p.Spec.NodeName, p.Spec.HostNetwork = o.Spec.NodeName, o.Spec.HostNetwork
	p.Spec.Containers = namedPorts(o.Spec.InitContainers, o.Spec.Containers)
	p.Status = corev1.PodStatus{Phase: o.Status.Phase, PodIPs: o.Status.PodIPs}
	if len(o.Status.PodIPs) == 0 {
		p.Status.PodIP = o.Status.PodIP // podIPs has it otherwise
	}
	return p
}

// namedPorts is the named ports of every (init) container, held by one
// unnamed container, or no container when there are none: named ports
// are all the agent reads of containers (a policy's named port resolves
// against the pod's), and each container costs 400 bytes.
func namedPorts(lists ...[]corev1.Container) []corev1.Container {
	var ports []corev1.ContainerPort
	for _, cs := range lists {
		for _, c := range cs {
			for _, cp := range c.Ports {
				if cp.Name != "" {
					ports = append(ports, cp)
				}
			}
		}
	}
	if ports == nil {
		return nil
	}
	return []corev1.Container{{Ports: ports}}
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
	case *corev1.Pod:
		n, ok := newObj.(*corev1.Pod)
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
func podChanged(o, n *corev1.Pod) bool {
	if o.UID != n.UID || o.Spec.NodeName != n.Spec.NodeName || o.Spec.HostNetwork != n.Spec.HostNetwork ||
		o.Status.Phase != n.Status.Phase || o.Status.PodIP != n.Status.PodIP ||
		!maps.Equal(o.Labels, n.Labels) || !reflect.DeepEqual(o.Status.PodIPs, n.Status.PodIPs) {
		return true
	}
	return !reflect.DeepEqual(containerPorts(o), containerPorts(n))
}

func containerPorts(p *corev1.Pod) [][]corev1.ContainerPort {
	var out [][]corev1.ContainerPort
	for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
		out = append(out, c.Ports)
	}
	return out
}

var _ cache.TransformFunc = StripForCache
