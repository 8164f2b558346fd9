// Package controller is weir-agent's control loop: it turns cluster objects
// (from an API-server cache or a directory of manifests) into an
// policy.Snapshot, and hands it to one worker that compiles and applies
// through a dataplane.Applier (backend.go opens nftables or iptables). The
// conversion here is pure; sources and the worker live in their own files.
package controller

import (
	"net/netip"
	"slices"
	"sort"

	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Objects is the raw cluster state a source collected.
type Objects struct {
	Nodes      []*corev1.Node
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Policies   []*networkingv1.NetworkPolicy
}

// BuildSnapshot converts cluster objects into the snapshot for node
// nodeName. Pods without IPs and finished pods (phase Succeeded or Failed)
// are left out: they hold no address anyone can reach. A pod being deleted
// stays, selected by policies and a peer of others, for as long as it
// runs: its grace period lasts until it is finished or gone from the API
// server. The one exception is an address reused before the source saw the
// old pod go (see yields): a pod that is not being deleted wins the
// address, and a pod being deleted that holds one of its addresses is left
// out. Two pods of the same kind that share an address both stay, as
// before this rule. Pods keep the source's order (policy.Compile does not depend on
// it); namespaces and policies are sorted. The agent keeps the same
// snapshot up to date from changes (see view); this full conversion is
// what that must equal.
func BuildSnapshot(nodeName string, clusterCIDRs []netip.Prefix, o Objects) policy.Snapshot {
	s := policy.Snapshot{Node: policy.Node{Name: nodeName}, ClusterCIDRs: clusterCIDRs, Pods: make([]policy.Pod, 0, len(o.Pods))}
	for _, n := range o.Nodes {
		if n.Name != nodeName {
			continue
		}
		s.Node.Addrs = nodeAddrs(n)
		s.Node.PodCIDRs = parsePrefixes(n.Spec.PodCIDRs, n.Spec.PodCIDR)
	}
	known := map[string]bool{}
	for _, ns := range o.Namespaces {
		s.Namespaces = append(s.Namespaces, namespace(ns.Name, ns.Labels))
		known[ns.Name] = true
	}
	pods := make([]policy.Pod, len(o.Pods))
	kept := make([]bool, len(o.Pods))
	claimed := map[netip.Addr]bool{} // addresses of pods that are not being deleted
	for i, p := range o.Pods {
		pods[i], kept[i] = convertPod(p)
		if kept[i] && claims(p) {
			for _, ip := range pods[i].IPs {
				claimed[ip] = true
			}
		}
	}
	for i, p := range o.Pods {
		if !kept[i] || yields(p) && slices.ContainsFunc(pods[i].IPs, func(ip netip.Addr) bool { return claimed[ip] }) {
			continue
		}
		s.Pods = append(s.Pods, pods[i])
		if !known[p.Namespace] {
			// A manifest directory may leave a namespace implicit; the
			// API server would hold it with only its name label.
			s.Namespaces = append(s.Namespaces, namespace(p.Namespace, nil))
			known[p.Namespace] = true
		}
	}
	s.Policies = append(s.Policies, o.Policies...)
	sort.Slice(s.Namespaces, func(i, j int) bool { return s.Namespaces[i].Name < s.Namespaces[j].Name })
	sort.Slice(s.Policies, func(i, j int) bool {
		a, b := s.Policies[i], s.Policies[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return s
}

// namespace copies labels and adds kubernetes.io/metadata.name, which the
// API server sets on every namespace and selectors commonly use.
func namespace(name string, labels map[string]string) policy.Namespace {
	l := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		l[k] = v
	}
	l[corev1.LabelMetadataName] = name
	return policy.Namespace{Name: name, Labels: l}
}

// convertPod keeps what policy needs of a pod. It reports false for a
// pod the snapshot leaves out whatever the other pods: one without an
// address, or finished. A pod being deleted converts: until it finishes,
// its containers run and use its addresses.
func convertPod(p *corev1.Pod) (policy.Pod, bool) {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return policy.Pod{}, false
	}
	var ips []string
	for _, ip := range p.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = append(ips, p.Status.PodIP)
	}
	out := policy.Pod{
		Namespace:   p.Namespace,
		Name:        p.Name,
		Node:        p.Spec.NodeName,
		Labels:      p.Labels,
		HostNetwork: p.Spec.HostNetwork,
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil {
			out.IPs = append(out.IPs, a.Unmap())
		}
	}
	if len(out.IPs) == 0 {
		return policy.Pod{}, false
	}
	for _, c := range slicesConcat(p.Spec.InitContainers, p.Spec.Containers) {
		for _, cp := range c.Ports {
			if cp.Name == "" {
				continue
			}
			proto := string(cp.Protocol)
			if proto == "" {
				proto = string(corev1.ProtocolTCP)
			}
			out.Ports = append(out.Ports, policy.ContainerPort{Name: cp.Name, Protocol: proto, Port: cp.ContainerPort})
		}
	}
	return out, true
}

// yields reports whether p gives up its addresses to a pod that claims
// them (see claims): p is being deleted. Its addresses go back to the IPAM
// only when its sandbox is torn down (CNI DEL), so a pod that is not being
// deleted and has one of them got it after that, while the source still
// showed p: p no longer runs with it. hostNetwork pods neither yield nor
// claim: their addresses are the node's, shared by design.
func yields(p *corev1.Pod) bool {
	return p.DeletionTimestamp != nil && !p.Spec.HostNetwork
}

// claims reports whether p, when it converts, wins its addresses from pods
// that yield them: it is not being deleted.
func claims(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && !p.Spec.HostNetwork
}

func slicesConcat(a, b []corev1.Container) []corev1.Container {
	return append(append([]corev1.Container{}, a...), b...)
}

// nodeAddrs returns the node's InternalIP and ExternalIP addresses.
func nodeAddrs(n *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// InternalIPs returns the node's InternalIP addresses, one per family at most.
func InternalIPs(n *corev1.Node) []netip.Addr {
	var out []netip.Addr
	seen := map[bool]bool{}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil || seen[ip.Is6()] {
			continue
		}
		seen[ip.Is6()] = true
		out = append(out, ip.Unmap())
	}
	return out
}

func parsePrefixes(list []string, single string) []netip.Prefix {
	if len(list) == 0 && single != "" {
		list = []string{single}
	}
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}
