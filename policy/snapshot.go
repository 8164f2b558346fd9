package policy

import (
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Snapshot is everything Compile needs to know about the cluster, as seen
// from one node. It is a plain value: the agent fills it from an API-server
// cache or from a directory of manifests; tests fill it by hand.
type Snapshot struct {
	// Node is the node the ruleset is for.
	Node Node
	// ClusterCIDRs are the pod networks of the whole cluster; traffic from a
	// local pod to anything outside them is masqueraded.
	ClusterCIDRs []netip.Prefix
	Namespaces   []Namespace
	// Pods of every node: peers may live anywhere.
	Pods     []Pod
	Policies []*networkingv1.NetworkPolicy
	// ClusterPolicies are the cluster's ClusterNetworkPolicies, both tiers
	// (see cluster.go).
	ClusterPolicies []*cnpv1beta1.ClusterNetworkPolicy
	// Nodes are every node of the cluster, this one included, with what
	// the nodes peers of ClusterNetworkPolicy egress rules match: their
	// labels and addresses.
	Nodes []PeerNode
	// LogDenied, when its Group is set, logs the packets isolation drops
	// (see DeniedLog).
	LogDenied DeniedLog
	// TierPassMark is the packet mark bit of an Admin tier Pass (see
	// cluster.go); 0 means DefaultTierPassMark.
	TierPassMark uint32
	// DNSMark is the packet mark bit of a DNS query steered to the DNS
	// proxy, DNSProxyPort the port the proxy listens on, DNSSetSize the
	// most addresses one domainNames rule learns (see dns.go); 0 means
	// DefaultDNSMark, DefaultDNSProxyPort, DefaultDNSSetSize.
	DNSMark      uint32
	DNSProxyPort uint16
	DNSSetSize   uint32
	// PodInterfacePrefix starts the name of the host-side veth of every
	// local pod (the plugin's hostInterfacePrefix): packets coming in on
	// such an interface must carry a source address routed back through
	// it (see spoof.go). Empty means DefaultPodInterfacePrefix.
	PodInterfacePrefix string
	// Seq, when not 0, names this snapshot for the PodDelta of a later
	// one. A producer gives every snapshot it makes a Seq that no other
	// snapshot of the process had (nor will have).
	Seq uint64
	// PodDelta, when not nil, tells which pods changed since an earlier
	// snapshot: a Compiler whose last snapshot was that one compares only
	// those pods instead of every pod. Compile ignores it.
	PodDelta *PodDelta
}

// PodDelta lists the pods that may differ between a snapshot and the one
// whose Seq is Base: added, changed or removed. Every pod it does not list
// must be, in content, what it was in snapshot Base (it may have moved
// within the pod slice). A Compiler checks what it can cheaply (Base, the
// names at the indexes, the number of pods) and compares every pod when a
// check fails.
type PodDelta struct {
	Base    uint64
	Changed []PodChange
}

// PodChange is a pod of a PodDelta: its namespace and name, and its index
// in the snapshot's pod slice, or -1 when the snapshot no longer holds it.
type PodChange struct {
	Namespace, Name string
	Index           int
}

// DeniedLog configures the logging of dropped packets: each isolated
// pod's drop is preceded by a rule sending the packet to NFLOG group
// Group, at most Rate packets a second per selection chain, with the
// prefix DeniedPrefix + the selection chain's name (every isolated pod
// then has a selection chain, even when one policy selects it). Off when
// Group is 0.
type DeniedLog struct {
	Group uint16
	Rate  uint32
}

// Node is the local node.
type Node struct {
	Name string
	// Addrs are the node's own addresses; traffic between a local pod and
	// these is always allowed (kubelet probes).
	Addrs []netip.Addr
	// PodCIDRs are this node's pod ranges.
	PodCIDRs []netip.Prefix
}

// PeerNode is a node as a ClusterNetworkPolicy nodes peer sees it: its
// labels, and the addresses of its status (every IP address the node
// reports, InternalIP and ExternalIP alike).
type PeerNode struct {
	Name   string
	Labels map[string]string
	Addrs  []netip.Addr
}

// Namespace is a namespace and its labels.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Pod is a pod with what policy needs of it.
type Pod struct {
	Namespace   string
	Name        string
	Node        string
	Labels      map[string]string
	IPs         []netip.Addr
	HostNetwork bool
	Ports       []ContainerPort
}

// ContainerPort is a named container port, used to resolve named ports in
// policies against the destination pod.
type ContainerPort struct {
	Name     string
	Protocol string // "TCP", "UDP" or "SCTP"
	Port     int32
}
