package snapshot

import (
	"fmt"
	"maps"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/internal/testkit"
)

// benchObjects is the benchmarks' cluster (synth.Big: 10,000 pods, 1,000
// policies, 100 of the pods on synth.NodeName) as API objects.
func benchObjects() Objects {
	o := synth.ObjectsOf(synth.Cluster(synth.Big))
	return Objects{Nodes: []*corev1.Node{o.Node}, Namespaces: o.Namespaces, Pods: NewPods(o.Pods...), Policies: o.Policies}
}

func BenchmarkBuildSnapshot10k(b *testing.B) {
	o := benchObjects()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Build(synth.NodeName, nil, o)
	}
}

// BenchmarkViewOneChange10k is the view taking one pod update (as an
// informer event hands it over) and producing the snapshot, at 10,000 pods.
func BenchmarkViewOneChange10k(b *testing.B) {
	o := benchObjects()
	v := NewView()
	v.Apply(Changes{Full: true, Objects: o})
	v.Snapshot(synth.NodeName, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := *o.Pods[i%len(o.Pods)]
		p.Labels = maps.Clone(p.Labels)
		p.Labels["tier"] = fmt.Sprint(i)
		v.Apply(Changes{Pods: map[string]*Pod{cache.NewObjectName(p.Namespace, p.Name).String(): &p}})
		v.Snapshot(synth.NodeName, nil)
	}
}

// BenchmarkViewFullListing10k is a sync of a source that only lists: the
// view diffs a listing of unchanged objects that are the same pointers as
// before, its cheapest case (a manifest directory re-parses every file, so
// none of its pods take that shortcut).
func BenchmarkViewFullListing10k(b *testing.B) {
	o := benchObjects()
	v := NewView()
	v.Apply(Changes{Full: true, Objects: o})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v.Apply(Changes{Full: true, Objects: o})
		v.Snapshot(synth.NodeName, nil)
	}
}

// BenchmarkViewHeap10k reports the heap a view keeps after its first
// listing and snapshot of the benchmarks' cluster, view-MB (the pods and
// policies it holds not counted), and after 100 pod updates, changed-MB.
// Run it with -benchtime 1x.
func BenchmarkViewHeap10k(b *testing.B) {
	o := benchObjects()
	var first, changed float64
	for b.Loop() {
		base := testkit.LiveHeap()
		v := NewView()
		v.Apply(Changes{Full: true, Objects: o})
		v.Snapshot(synth.NodeName, nil)
		first += float64(testkit.LiveHeap() - base)
		for i := range 100 {
			p := *o.Pods[i]
			v.Apply(Changes{Pods: map[string]*Pod{cache.NewObjectName(p.Namespace, p.Name).String(): &p}})
			v.Snapshot(synth.NodeName, nil)
		}
		changed += float64(testkit.LiveHeap() - base)
		runtime.KeepAlive(v)
	}
	b.ReportMetric(first/float64(b.N)/(1<<20), "view-MB")
	b.ReportMetric(changed/float64(b.N)/(1<<20), "changed-MB")
}
