package snapshot

import (
	"fmt"
	"testing"

	"github.com/weir-cni/weir/controller/snapshot/snapshottest"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// benchObjects is snapshottest.Cluster(n) as Objects.
func benchObjects(n int) Objects {
	nodes, namespaces, pods := snapshottest.Cluster(n)
	return Objects{Nodes: nodes, Namespaces: namespaces, Pods: pods}
}

func BenchmarkBuildSnapshot10k(b *testing.B) {
	o := benchObjects(10000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Build("n1", nil, o)
	}
}

// BenchmarkViewOneChange10k is the view taking one pod update (as an
// informer event hands it over) and producing the snapshot, at 10,000 pods.
func BenchmarkViewOneChange10k(b *testing.B) {
	o := benchObjects(10000)
	v := NewView()
	v.Apply(Changes{Full: true, Objects: o})
	v.Snapshot("n1", nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := o.Pods[i%len(o.Pods)].DeepCopy()
		p.Labels["tier"] = fmt.Sprint(i)
		v.Apply(Changes{Pods: map[string]*corev1.Pod{cache.NewObjectName(p.Namespace, p.Name).String(): p}})
		v.Snapshot("n1", nil)
	}
}

// BenchmarkViewFullListing10k is a sync of a source that only lists: the
// view diffs a listing of unchanged objects that are the same pointers as
// before, its cheapest case (a manifest directory re-parses every file, so
// none of its pods take that shortcut).
func BenchmarkViewFullListing10k(b *testing.B) {
	o := benchObjects(10000)
	v := NewView()
	v.Apply(Changes{Full: true, Objects: o})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v.Apply(Changes{Full: true, Objects: o})
		v.Snapshot("n1", nil)
	}
}
