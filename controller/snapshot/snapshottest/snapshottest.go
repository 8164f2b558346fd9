// Package snapshottest holds what the tests of snapshot, source and
// controller share: builders of the Kubernetes objects a source hands
// over, a cluster of any size for benchmarks, and the comparison of
// snapshots that differ only in pod order. It is used by tests only, and
// does not import package snapshot, whose own tests use it.
package snapshottest

import (
	"fmt"
	"reflect"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/policy"
)

// Pod is pod ns/name on node with labels and, when ips are given, those
// pod IPs.
func Pod(ns, name, node string, labels map[string]string, ips ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Spec: corev1.PodSpec{NodeName: node}}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	return p
}

// Node is node name with podCIDRs cidrs and InternalIP addresses ips.
func Node(name string, cidrs []string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: cidrs}}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return n
}

// Cluster is a cluster of n pods in 100 namespaces on 100 nodes.
func Cluster(n int) (nodes []*corev1.Node, namespaces []*corev1.Namespace, pods []*corev1.Pod) {
	for i := 0; i < 100; i++ {
		namespaces = append(namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns%d", i), Labels: map[string]string{"team": fmt.Sprint(i % 7)}}})
		nodes = append(nodes, Node(fmt.Sprintf("n%d", i), []string{fmt.Sprintf("10.%d.%d.0/24", 100+i/250, i%250)}, fmt.Sprintf("192.168.%d.%d", i/250, i%250+1)))
	}
	for i := 0; i < n; i++ {
		p := Pod(fmt.Sprintf("ns%d", i%100), fmt.Sprintf("p%d", i), fmt.Sprintf("n%d", i%100),
			map[string]string{"app": fmt.Sprint("a", i%50), "tier": fmt.Sprint(i % 3)}, fmt.Sprintf("10.%d.%d.%d", 100+(i%100)/250, i%100, i/100+1))
		p.Spec.Containers = []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}
		pods = append(pods, p)
	}
	return nodes, namespaces, pods
}

// Canonical sorts a snapshot's pods and makes empty slices nil, so that
// snapshots that differ only in pod order compare equal.
func Canonical(s policy.Snapshot) policy.Snapshot {
	s.Pods = append([]policy.Pod(nil), s.Pods...)
	sort.Slice(s.Pods, func(i, j int) bool {
		a, b := s.Pods[i], s.Pods[j]
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	if len(s.Pods) == 0 {
		s.Pods = nil
	}
	if len(s.Namespaces) == 0 {
		s.Namespaces = nil
	}
	if len(s.Policies) == 0 {
		s.Policies = nil
	}
	return s
}

// DescribeDiff names the first part in which two canonical snapshots
// differ, for a test failure message.
func DescribeDiff(got, want policy.Snapshot) string {
	if !reflect.DeepEqual(got.Node, want.Node) {
		return fmt.Sprintf("node %+v, want %+v", got.Node, want.Node)
	}
	if !reflect.DeepEqual(got.Namespaces, want.Namespaces) {
		return fmt.Sprintf("namespaces %+v, want %+v", got.Namespaces, want.Namespaces)
	}
	if !reflect.DeepEqual(got.Policies, want.Policies) {
		return fmt.Sprintf("%d policies, want %d", len(got.Policies), len(want.Policies))
	}
	if len(got.Pods) != len(want.Pods) {
		return fmt.Sprintf("%d pods, want %d", len(got.Pods), len(want.Pods))
	}
	for i := range got.Pods {
		if !reflect.DeepEqual(got.Pods[i], want.Pods[i]) {
			return fmt.Sprintf("pod %+v, want %+v", got.Pods[i], want.Pods[i])
		}
	}
	return "snapshots differ"
}
