package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"testing"

	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/ruleset"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// nopApplier programs nothing and, unlike recApplier, keeps nothing.
type nopApplier struct{ recApplier }

func (*nopApplier) Apply(context.Context, ruleset.Ruleset) ([]dataplane.Problem, error) {
	return nil, nil
}

// changeSource hands over the changes it is given, as KubeSource does.
type changeSource struct {
	memSource
	next snapshot.Changes
}

func (c *changeSource) Changes() (snapshot.Changes, error) {
	n := c.next
	c.next = snapshot.Changes{}
	return n, nil
}

// BenchmarkAgentSyncOneLabel10k is one worker sync (read, snapshot, compile,
// no kernel) after one pod's labels changed, at 10,000 pods: from a source
// that only lists and returns the unchanged pods as the same pointers (a
// manifest directory re-parses every file instead, so each of its pods is
// new and costs more than here), and from one that reports changes (the
// API server's informers).
func BenchmarkAgentSyncOneLabel10k(b *testing.B) {
	for _, changes := range []bool{false, true} {
		b.Run(fmt.Sprint("changes=", changes), func(b *testing.B) {
			o := benchObjects()
			src := &changeSource{memSource: memSource{objs: o}, next: snapshot.Changes{Full: true, Objects: o}}
			a := &Agent{Node: synth.NodeName, Source: &src.memSource, Applier: &nopApplier{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if changes {
				a.Source = src
			}
			a.init()
			if err := a.sync(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p := new(*o.Pods[7])
				p.Labels = maps.Clone(p.Labels)
				p.Labels["tier"] = fmt.Sprint(i)
				o.Pods[7] = p
				src.objs = o
				src.next = snapshot.Changes{Pods: map[string]*snapshot.Pod{cache.NewObjectName(p.Namespace, p.Name).String(): p}}
				if err := a.sync(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchObjects is the benchmarks' cluster (synth.Big: 10,000 pods, 1,000
// policies, 100 of the pods on synth.NodeName) as API objects.
func benchObjects() snapshot.Objects {
	o := synth.ObjectsOf(synth.Cluster(synth.Big))
	return snapshot.Objects{Nodes: []*corev1.Node{o.Node}, Namespaces: o.Namespaces, Pods: snapshot.NewPods(o.Pods...), Policies: o.Policies}
}
