package controller

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// benchObjects is a cluster of n pods in 100 namespaces on 100 nodes.
func benchObjects(n int) Objects {
	var o Objects
	for i := 0; i < 100; i++ {
		o.Namespaces = append(o.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns%d", i), Labels: map[string]string{"team": fmt.Sprint(i % 7)}}})
		o.Nodes = append(o.Nodes, node(fmt.Sprintf("n%d", i), []string{fmt.Sprintf("10.%d.%d.0/24", 100+i/250, i%250)}, fmt.Sprintf("192.168.%d.%d", i/250, i%250+1)))
	}
	for i := 0; i < n; i++ {
		p := pod(fmt.Sprintf("ns%d", i%100), fmt.Sprintf("p%d", i), fmt.Sprintf("n%d", i%100),
			map[string]string{"app": fmt.Sprint("a", i%50), "tier": fmt.Sprint(i % 3)}, fmt.Sprintf("10.%d.%d.%d", 100+(i%100)/250, i%100, i/100+1))
		p.Spec.Containers = []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}
		o.Pods = append(o.Pods, p)
	}
	return o
}

func BenchmarkBuildSnapshot10k(b *testing.B) {
	o := benchObjects(10000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		BuildSnapshot("n1", nil, o)
	}
}

// BenchmarkViewOneChange10k is the view taking one pod update (as an
// informer event hands it over) and producing the snapshot, at 10,000 pods.
func BenchmarkViewOneChange10k(b *testing.B) {
	o := benchObjects(10000)
	v := newView()
	v.apply(Changes{Full: true, Objects: o})
	v.snapshot("n1", nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := o.Pods[i%len(o.Pods)].DeepCopy()
		p.Labels["tier"] = fmt.Sprint(i)
		v.apply(Changes{Pods: map[string]*corev1.Pod{cache.NewObjectName(p.Namespace, p.Name).String(): p}})
		v.snapshot("n1", nil)
	}
}

// BenchmarkViewFullListing10k is a sync of a source that only lists: the
// view diffs a listing of unchanged objects that are the same pointers as
// before, its cheapest case (a manifest directory re-parses every file, so
// none of its pods take that shortcut).
func BenchmarkViewFullListing10k(b *testing.B) {
	o := benchObjects(10000)
	v := newView()
	v.apply(Changes{Full: true, Objects: o})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v.apply(Changes{Full: true, Objects: o})
		v.snapshot("n1", nil)
	}
}
