package snapshot

import (
	"github.com/weir-cni/weir/internal/fixtures"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/tools/cache"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// pod and node build the objects of these tests (fixtures.Pod,
// fixtures.Node).
var pod, node = fixtures.Pod, fixtures.Node

// store is a cluster as an informer cache holds it. Every write replaces
// the object (caches never modify one in place) and records the key as a
// source's Changes would. Pods are held as the cache holds them (Pod),
// and as written (corev1.Pod, under kind "api pod") for tests to change.
type store struct {
	o       map[string]map[string]any // kind -> key -> object
	changed Changes
}

func newStore() *store {
	s := &store{o: map[string]map[string]any{"pod": {}, "api pod": {}, "ns": {}, "pol": {}, "node": {}, "cnp": {}}}
	s.clearChanges()
	return s
}

func (s *store) clearChanges() {
	s.changed = Changes{Pods: map[string]*Pod{}, Namespaces: map[string]*corev1.Namespace{},
		Policies: map[string]*networkingv1.NetworkPolicy{}, Nodes: map[string]*corev1.Node{},
		ClusterPolicies: map[string]*cnpv1beta1.ClusterNetworkPolicy{}}
}

// put stores obj as key k of kind and records the change in changed.
func put[T any](s *store, kind, k string, changed map[string]*T, obj *T) {
	s.o[kind][k], changed[k] = obj, obj
}

// del removes key k of kind and records the deletion in changed.
func del[T any](s *store, kind, k string, changed map[string]*T) {
	delete(s.o[kind], k)
	changed[k] = nil
}

func objKey(ns, name string) string { return cache.NewObjectName(ns, name).String() }

func (s *store) putPod(p *corev1.Pod) {
	k := objKey(p.Namespace, p.Name)
	s.o["api pod"][k] = p
	put(s, "pod", k, s.changed.Pods, NewPod(p))
}

func (s *store) delPod(ns, name string) {
	delete(s.o["api pod"], objKey(ns, name))
	del(s, "pod", objKey(ns, name), s.changed.Pods)
}

func (s *store) putNS(name string, labels map[string]string) {
	put(s, "ns", name, s.changed.Namespaces, fixtures.Namespace(name, labels))
}
func (s *store) delNS(name string) { del(s, "ns", name, s.changed.Namespaces) }

func (s *store) putNode(n *corev1.Node) { put(s, "node", n.Name, s.changed.Nodes, n) }
func (s *store) delNode(name string)    { del(s, "node", name, s.changed.Nodes) }

func (s *store) putPolicy(p *networkingv1.NetworkPolicy) {
	put(s, "pol", objKey(p.Namespace, p.Name), s.changed.Policies, p)
}
func (s *store) delPolicy(ns, name string) { del(s, "pol", objKey(ns, name), s.changed.Policies) }

func (s *store) putCNP(p *cnpv1beta1.ClusterNetworkPolicy) {
	put(s, "cnp", p.Name, s.changed.ClusterPolicies, p)
}
func (s *store) delCNP(name string) { del(s, "cnp", name, s.changed.ClusterPolicies) }

func (s *store) getNode(name string) *corev1.Node {
	n, _ := s.o["node"][name].(*corev1.Node)
	return n
}

func (s *store) getPod(ns, name string) *corev1.Pod {
	p, _ := s.o["api pod"][objKey(ns, name)].(*corev1.Pod)
	return p
}

// objects lists the store in an order that differs from call to call, as
// listers do.
func (s *store) objects() Objects {
	var o Objects
	for _, v := range s.o["pod"] {
		o.Pods = append(o.Pods, v.(*Pod))
	}
	for _, v := range s.o["ns"] {
		o.Namespaces = append(o.Namespaces, v.(*corev1.Namespace))
	}
	for _, v := range s.o["pol"] {
		o.Policies = append(o.Policies, v.(*networkingv1.NetworkPolicy))
	}
	for _, v := range s.o["node"] {
		o.Nodes = append(o.Nodes, v.(*corev1.Node))
	}
	for _, v := range s.o["cnp"] {
		o.ClusterPolicies = append(o.ClusterPolicies, v.(*cnpv1beta1.ClusterNetworkPolicy))
	}
	return o
}
