package synth_test

import (
	"net/netip"
	"reflect"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/policy"
)

// TestObjectsAreTheCluster: the agent's conversion of ObjectsOf gives the
// cluster back, so benchmarks of either form measure the same cluster.
// (The agent adds each namespace's kubernetes.io/metadata.name label,
// sorts namespaces and policies, and lists the node, labels and addresses,
// for the nodes peers of ClusterNetworkPolicies.)
func TestObjectsAreTheCluster(t *testing.T) {
	s := synth.Cluster(synth.Options{Pods: 1000, Policies: 100, Local: 2})
	o := synth.ObjectsOf(s)
	got := snapshot.Build(synth.NodeName, []netip.Prefix{netip.MustParsePrefix(synth.ClusterCIDR)},
		snapshot.Objects{Nodes: []*corev1.Node{o.Node}, Namespaces: o.Namespaces, Pods: o.Pods, Policies: o.Policies})
	for _, ns := range s.Namespaces {
		ns.Labels[corev1.LabelMetadataName] = ns.Name
	}
	sort.Slice(s.Namespaces, func(i, j int) bool { return s.Namespaces[i].Name < s.Namespaces[j].Name })
	sort.Slice(s.Policies, func(i, j int) bool {
		a, b := s.Policies[i], s.Policies[j]
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	s.Nodes = []policy.PeerNode{{Name: s.Node.Name, Addrs: s.Node.Addrs}}
	if !reflect.DeepEqual(got, s) {
		t.Error("snapshot.Build(ObjectsOf(s)) differs from s")
	}
}

// TestClusterSizes pins what Options ask for.
func TestClusterSizes(t *testing.T) {
	s := synth.Cluster(synth.Options{Pods: 1000, Policies: 100, Local: 3})
	local := 0
	for _, p := range s.Pods {
		if p.Node == synth.NodeName {
			local++
		}
	}
	if len(s.Pods) != 1000 || len(s.Policies) != 100 || len(s.Namespaces) != 11 || local != 30 {
		t.Errorf("%d pods (%d local), %d policies, %d namespaces; want 1000 (30), 100, 10 + monitoring",
			len(s.Pods), local, len(s.Policies), len(s.Namespaces))
	}
	if r := policy.Compile(s); len(r.Problems) != 0 {
		t.Errorf("problems: %v", r.Problems)
	}
}

// TestHugeSize pins the large cluster of the scale benchmarks: 50,000
// pods with 200 on the node, 5,000 policies, and distinct pod addresses.
func TestHugeSize(t *testing.T) {
	s := synth.Cluster(synth.Huge)
	local, addrs := 0, map[netip.Addr]bool{}
	for _, p := range s.Pods {
		if p.Node == synth.NodeName {
			local++
		}
		for _, a := range p.IPs {
			addrs[a] = true
		}
	}
	if len(s.Pods) != 50000 || len(s.Policies) != 5000 || local != 200 || len(addrs) != len(s.Pods) {
		t.Errorf("%d pods (%d local, %d addresses), %d policies; want 50000 (200, 50000), 5000",
			len(s.Pods), local, len(addrs), len(s.Policies))
	}
}
