package snapshot

import (
	"net/netip"
	"slices"
	"unique"

	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Pod is what the agent keeps of a pod: what the snapshot, announcements
// and change detection read. A node follows every pod of the cluster, and
// a corev1.Pod costs 1,240 bytes before any of its fields hold anything;
// a Pod costs 176. It is a metav1.ObjectMetaAccessor, so client-go's
// caches hold it under the pod's key. Pods are shared (caches, views,
// snapshots): do not modify one.
type Pod struct {
	// Namespace, Name, UID, ResourceVersion, Labels and DeletionTimestamp
	// are the pod's metadata fields of those names; the others go.
	Namespace, Name   string
	UID               types.UID
	ResourceVersion   string
	Labels            map[string]string
	DeletionTimestamp *metav1.Time
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
	out := &Pod{Namespace: unique.Make(p.Namespace).Value(), Name: p.Name, UID: p.UID,
		ResourceVersion: p.ResourceVersion, Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp,
		NodeName: unique.Make(p.Spec.NodeName).Value(), HostNetwork: p.Spec.HostNetwork, Phase: p.Status.Phase}
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

// GetObjectMeta returns p's metadata as client-go's caches read it (see
// meta.Accessor): a new ObjectMeta, which shares p's Labels map (with every
// pod of the same labels) and DeletionTimestamp: read it, never write it.
func (p *Pod) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion,
		Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp}
}

// NewPods is NewPod of each pod.
func NewPods(pods ...*corev1.Pod) []*Pod {
	out := make([]*Pod, len(pods))
	for i, p := range pods {
		out[i] = NewPod(p)
	}
	return out
}
