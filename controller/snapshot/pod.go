package snapshot

import (
	"net/netip"
	"slices"

	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Pod is what the agent keeps of a pod: what the snapshot, announcements
// and change detection read. A node follows every pod of the cluster, and
// a corev1.Pod costs 1,240 bytes before any of its fields hold anything;
// a Pod costs a quarter of that. Its metadata is the pod's without
// annotations, owner references and managed fields: it is a
// metav1.Object, so client-go's caches hold it under the pod's key.
// Pods are shared (caches, views, snapshots): do not modify one.
type Pod struct {
	metav1.ObjectMeta
	// NodeName and HostNetwork are the pod's spec.nodeName and
	// spec.hostNetwork.
	NodeName    string
	HostNetwork bool
	// Phase is status.phase.
	Phase corev1.PodPhase
	// IPs are the addresses of status.podIPs (status.podIP when podIPs
	// is empty), unmapped; those that do not parse are left out.
	IPs []netip.Addr
	// Ports are the named ports of the pod's init containers, then of
	// its containers, in their order (protocol TCP when unset): all the
	// agent reads of containers, as a policy's named port resolves against
	// the pod's.
	Ports []policy.ContainerPort
}

// NewPod returns what the agent keeps of p. Pods with equal labels share
// one map, and pods with equal named ports one slice (see sharedTable).
func NewPod(p *corev1.Pod) *Pod {
	out := &Pod{ObjectMeta: p.ObjectMeta, NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork,
		Phase: p.Status.Phase}
	out.ManagedFields, out.OwnerReferences, out.Annotations = nil, nil, nil
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			out.IPs = append(out.IPs, a.Unmap())
		}
	}
	for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
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
	if len(out.Labels) > 0 {
		out.Labels = labelSets.get(labelsKey(out.Labels), out.Labels)
	}
	if len(out.Ports) > 0 {
		out.Ports = portLists.get(portsKey(out.Ports), out.Ports)
	}
	return out
}

// NewPods is NewPod of each pod.
func NewPods(pods ...*corev1.Pod) []*Pod {
	out := make([]*Pod, len(pods))
	for i, p := range pods {
		out[i] = NewPod(p)
	}
	return out
}
