package snapshot

import (
	"github.com/weir-cni/weir/controller/snapshot/snapshottest"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// pod and node build the objects of these tests.
var (
	pod  = snapshottest.Pod
	node = snapshottest.Node
)

// store is a cluster as an informer cache holds it. Every write replaces
// the object (caches never modify one in place) and records the key as a
// source's Changes would.
type store struct {
	o       map[string]map[string]any // kind -> key -> object
	changed Changes
}

func newStore() *store {
	s := &store{o: map[string]map[string]any{"pod": {}, "ns": {}, "pol": {}, "node": {}}}
	s.clearChanges()
	return s
}

func (s *store) clearChanges() {
	s.changed = Changes{Pods: map[string]*corev1.Pod{}, Namespaces: map[string]*corev1.Namespace{},
		Policies: map[string]*networkingv1.NetworkPolicy{}, Nodes: map[string]*corev1.Node{}}
}

func (s *store) putPod(p *corev1.Pod) {
	k := cache.NewObjectName(p.Namespace, p.Name).String()
	s.o["pod"][k], s.changed.Pods[k] = p, p
}

func (s *store) delPod(ns, name string) {
	k := cache.NewObjectName(ns, name).String()
	delete(s.o["pod"], k)
	s.changed.Pods[k] = nil
}

func (s *store) putNS(name string, labels map[string]string) {
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	s.o["ns"][name], s.changed.Namespaces[name] = n, n
}

func (s *store) delNS(name string) {
	delete(s.o["ns"], name)
	s.changed.Namespaces[name] = nil
}

func (s *store) putNode(n *corev1.Node) { s.o["node"][n.Name], s.changed.Nodes[n.Name] = n, n }

func (s *store) delNode(name string) {
	delete(s.o["node"], name)
	s.changed.Nodes[name] = nil
}

func (s *store) putPolicy(p *networkingv1.NetworkPolicy) {
	k := cache.NewObjectName(p.Namespace, p.Name).String()
	s.o["pol"][k], s.changed.Policies[k] = p, p
}

func (s *store) delPolicy(ns, name string) {
	k := cache.NewObjectName(ns, name).String()
	delete(s.o["pol"], k)
	s.changed.Policies[k] = nil
}

func (s *store) getPod(ns, name string) *corev1.Pod {
	p, _ := s.o["pod"][cache.NewObjectName(ns, name).String()].(*corev1.Pod)
	return p
}

// objects lists the store in an order that differs from call to call, as
// listers do.
func (s *store) objects() Objects {
	var o Objects
	for _, v := range s.o["pod"] {
		o.Pods = append(o.Pods, v.(*corev1.Pod))
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
	return o
}
