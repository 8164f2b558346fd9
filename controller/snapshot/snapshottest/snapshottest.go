// Package snapshottest holds what the tests of snapshot, source and
// controller share beyond internal/fixtures: the comparison of snapshots
// that differ only in pod order. It is used by tests only, and does not
// import package snapshot, whose own tests use it.
package snapshottest

import (
	"fmt"
	"reflect"
	"sort"

	"github.com/weir-cni/weir/policy"
)

// Canonical sorts a snapshot's pods, makes empty slices nil and drops
// its Seq and PodDelta, so that snapshots that differ only in pod order
// compare equal.
func Canonical(s policy.Snapshot) policy.Snapshot {
	s.Seq, s.PodDelta = 0, nil
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
	if len(s.ClusterPolicies) == 0 {
		s.ClusterPolicies = nil
	}
	if len(s.Nodes) == 0 {
		s.Nodes = nil
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
	if !reflect.DeepEqual(got.ClusterPolicies, want.ClusterPolicies) {
		return fmt.Sprintf("cluster policies %v, want %v", names(got.ClusterPolicies), names(want.ClusterPolicies))
	}
	if !reflect.DeepEqual(got.Nodes, want.Nodes) {
		return fmt.Sprintf("nodes %+v, want %+v", got.Nodes, want.Nodes)
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

// names lists the objects' names and generations, for a failure message.
func names[T interface {
	GetName() string
	GetGeneration() int64
}](objs []T) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = fmt.Sprintf("%s@%d", o.GetName(), o.GetGeneration())
	}
	return out
}
