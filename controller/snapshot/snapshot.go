package snapshot

import (
	"cmp"
	"net/netip"
	"slices"
	"sort"

	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
)

// Build converts cluster objects into the snapshot for node
// nodeName. Pods without IPs and finished pods (phase Succeeded or Failed)
// are left out: they hold no address anyone can reach. A pod being deleted
// stays, selected by policies and a peer of others, for as long as it
// runs: its grace period lasts until it is finished or gone from the API
// server. The one exception is an address reused before the source saw the
// old pod go (see Yields): a pod that is not being deleted wins the
// address, and a pod being deleted that holds one of its addresses is left
// out. Two pods of the same kind that share an address both stay, as
// before this rule. Pods keep the source's order (policy.Compile does not depend on
// it); namespaces, policies, ClusterNetworkPolicies and nodes are sorted
// (by namespace and name, or name). The agent keeps the same
// snapshot up to date from changes (see View); this full conversion is
// what that must equal.
func Build(nodeName string, clusterCIDRs []netip.Prefix, o Objects) policy.Snapshot {
	s := policy.Snapshot{Node: policy.Node{Name: nodeName}, ClusterCIDRs: clusterCIDRs, Pods: make([]policy.Pod, 0, len(o.Pods))}
	for _, n := range o.Nodes {
		if n.Name != nodeName {
			continue
		}
		s.Node.Addrs = nodeAddrs(n)
		s.Node.PodCIDRs = ParsePrefixes(n.Spec.PodCIDRs, n.Spec.PodCIDR)
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
		pods[i], kept[i] = ConvertPod(p)
		if kept[i] && Claims(p) {
			for _, ip := range pods[i].IPs {
				claimed[ip] = true
			}
		}
	}
	for i, p := range o.Pods {
		if !kept[i] || Yields(p) && slices.ContainsFunc(pods[i].IPs, func(ip netip.Addr) bool { return claimed[ip] }) {
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
	sort.Slice(s.Namespaces, func(i, j int) bool { return s.Namespaces[i].Name < s.Namespaces[j].Name })
	s.Policies = slices.SortedFunc(slices.Values(o.Policies), byKey)
	s.ClusterPolicies = slices.SortedFunc(slices.Values(o.ClusterPolicies), byKey)
	s.Nodes = peerNodes(slices.SortedFunc(slices.Values(o.Nodes), byKey))
	return s
}

// byKey orders objects as their cache keys: by namespace, then name.
func byKey[T named](a, b T) int {
	return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
}

// peerNodes converts nodes, in their order, for the nodes peers of
// ClusterNetworkPolicies (see peerNode); nil when there are none.
func peerNodes(nodes []*corev1.Node) []policy.PeerNode {
	var out []policy.PeerNode
	for _, n := range nodes {
		out = append(out, peerNode(n))
	}
	return out
}

// peerNode is what a nodes peer matches of n: its labels and every
// address of its status that is an IP (InternalIP, ExternalIP, or any
// other type that holds one), sorted, each once.
func peerNode(n *corev1.Node) policy.PeerNode {
	var addrs []netip.Addr
	for _, a := range n.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			addrs = append(addrs, ip.Unmap())
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return policy.PeerNode{Name: n.Name, Labels: n.Labels, Addrs: slices.Compact(addrs)}
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

// ConvertPod keeps what policy needs of a pod; the result shares p's
// labels and ports, and has a copy of its addresses: the compiler compares
// every pod's addresses on every sync, and a view converts its pods in
// their order, so the copies lie in consecutive memory, where the
// informer left each pod's wherever it decoded it. It reports false for a
// pod the snapshot leaves out whatever the other pods: one without an
// address, or finished. A pod being deleted converts: until it finishes,
// its containers run and use its addresses.
func ConvertPod(p *Pod) (policy.Pod, bool) {
	if p.Phase == corev1.PodSucceeded || p.Phase == corev1.PodFailed || len(p.IPs) == 0 {
		return policy.Pod{}, false
	}
	return policy.Pod{
		Namespace:   p.Namespace,
		Name:        p.Name,
		Node:        p.NodeName,
		Labels:      p.Labels,
		IPs:         slices.Clone(p.IPs),
		Ports:       p.Ports,
		HostNetwork: p.HostNetwork,
	}, true
}

// Yields reports whether p gives up its addresses to a pod that claims
// them (see Claims): p is being deleted. Its addresses go back to the IPAM
// only when its sandbox is torn down (CNI DEL), so a pod that is not being
// deleted and has one of them got it after that, while the source still
// showed p: p no longer runs with it. hostNetwork pods neither yield nor
// claim: their addresses are the node's, shared by design.
func Yields(p *Pod) bool {
	return p.DeletionTimestamp != nil && !p.HostNetwork
}

// Claims reports whether p, when it converts, wins its addresses from pods
// that yield them: it is not being deleted.
func Claims(p *Pod) bool {
	return p.DeletionTimestamp == nil && !p.HostNetwork
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

// ParsePrefixes parses a node's podCIDRs (spec.podCIDRs, or the single
// spec.podCIDR when the list is empty) and masks them; it skips what does
// not parse.
func ParsePrefixes(list []string, single string) []netip.Prefix {
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
