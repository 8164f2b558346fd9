package synth_test

import (
	"fmt"
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
		snapshot.Objects{Nodes: []*corev1.Node{o.Node}, Namespaces: o.Namespaces, Pods: snapshot.NewPods(o.Pods...), Policies: o.Policies})
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
// pods with 200 on the node and the others on 1,000 nodes, 5,000
// policies, and distinct pod addresses.
func TestHugeSize(t *testing.T) {
	s := synth.Cluster(synth.Huge)
	local, addrs, others := 0, map[netip.Addr]bool{}, map[string]bool{}
	for _, p := range s.Pods {
		if p.Node == synth.NodeName {
			local++
		} else {
			others[p.Node] = true
		}
		for _, a := range p.IPs {
			addrs[a] = true
		}
	}
	if len(s.Pods) != 50000 || len(s.Policies) != 5000 || local != 200 || len(others) != 1000 || len(addrs) != len(s.Pods) {
		t.Errorf("%d pods (%d local, %d other nodes, %d addresses), %d policies; want 50000 (200, 1000, 50000), 5000",
			len(s.Pods), local, len(others), len(addrs), len(s.Policies))
	}
}

// TestClusterNodes: pods spread over many nodes have distinct addresses,
// each inside its node's OtherNodeCIDR, and the local ones in NodeCIDR.
func TestClusterNodes(t *testing.T) {
	for _, o := range []synth.Options{{Pods: 2000, Policies: 1, Local: 1}, {Pods: 50000, Policies: 1, Namespaces: 200, Local: 1, Nodes: 1000}} {
		others := o.Nodes
		if others == 0 {
			others = 99 // Cluster's default
		}
		s := synth.Cluster(o)
		seen, local := map[netip.Addr]bool{}, 0
		for _, p := range s.Pods {
			if seen[p.IPs[0]] {
				t.Fatalf("%+v: address %s twice", o, p.IPs[0])
			}
			seen[p.IPs[0]] = true
			if p.Node == synth.NodeName {
				local++
				if !netip.MustParsePrefix(synth.NodeCIDR).Contains(p.IPs[0]) {
					t.Errorf("%+v: local pod %s at %s", o, p.Name, p.IPs[0])
				}
				continue
			}
			var n int
			if _, err := fmt.Sscanf(p.Node, "node%d", &n); err != nil || n < 1 || n > others {
				t.Fatalf("%+v: pod %s on node %q", o, p.Name, p.Node)
			}
			if c := synth.OtherNodeCIDR(n, others); !c.Contains(p.IPs[0]) {
				t.Fatalf("%+v: pod %s at %s, outside %s of %s", o, p.Name, p.IPs[0], c, p.Node)
			}
		}
		if want := len(s.Namespaces) - 1; local != want {
			t.Errorf("%+v: %d local pods, want %d", o, local, want)
		}
	}
}

// TestClusterRefusesOverfullNodes: a node of a /24 (255 other nodes or
// more) holds at most 256 pods; more would spill into the next node's.
func TestClusterRefusesOverfullNodes(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for 300 pods a node")
		}
	}()
	synth.Cluster(synth.Options{Pods: 300 * 300, Policies: 1, Local: 1, Nodes: 300})
}
