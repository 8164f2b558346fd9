package synth

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/policy"
)

// Objects is a snapshot as the API server holds it.
type Objects struct {
	// Node is the snapshot's node; the other nodes are only names in the
	// pods' spec.nodeName.
	Node       *corev1.Node
	Namespaces []*corev1.Namespace
	// Pods carry their addresses in status.podIPs, as after CNI ADD, and
	// their named ports in one container.
	Pods     []*corev1.Pod
	Policies []*networkingv1.NetworkPolicy
}

// ObjectsOf returns the API objects of s (a Cluster, typically).
func ObjectsOf(s policy.Snapshot) Objects {
	o := Objects{Policies: s.Policies}
	var addrs, cidrs []string
	for _, a := range s.Node.Addrs {
		addrs = append(addrs, a.String())
	}
	for _, c := range s.Node.PodCIDRs {
		cidrs = append(cidrs, c.String())
	}
	o.Node = fixtures.Node(s.Node.Name, cidrs, addrs...)
	for _, ns := range s.Namespaces {
		o.Namespaces = append(o.Namespaces, fixtures.Namespace(ns.Name, ns.Labels))
	}
	for _, p := range s.Pods {
		o.Pods = append(o.Pods, podObject(p))
	}
	return o
}

func podObject(p policy.Pod) *corev1.Pod {
	var ips []string
	for _, a := range p.IPs {
		ips = append(ips, a.String())
	}
	po := fixtures.Pod(p.Namespace, p.Name, p.Node, p.Labels, ips...)
	po.Spec.HostNetwork = p.HostNetwork
	c := corev1.Container{Name: "main"}
	for _, cp := range p.Ports {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: cp.Name, Protocol: corev1.Protocol(cp.Protocol), ContainerPort: cp.Port})
	}
	po.Spec.Containers = []corev1.Container{c}
	return po
}
