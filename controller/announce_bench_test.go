package controller

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
)

// BenchmarkAnnouncedPodSyncs50k is what a new local pod costs the worker
// at 50,000 pods (synth.Huge), without the kernel: one sync with the
// plugin's announcement of the pod, which the source has without an
// address, then one once the source has the address (the announcement is
// done). An op is both syncs. cleared gives the overlaid snapshots no Seq
// nor PodDelta, as before overlayer numbered them: the Compiler then
// compares every pod in both syncs. It reports the Compiler's time and the
// overlay's per sync, and the syncs that took a PodDelta.
func BenchmarkAnnouncedPodSyncs50k(b *testing.B) {
	o := synth.ObjectsOf(synth.Cluster(synth.Huge))
	objs := snapshot.Objects{Nodes: []*corev1.Node{o.Node}, Namespaces: o.Namespaces, Pods: snapshot.NewPods(o.Pods...), Policies: o.Policies}
	cidrs := []netip.Prefix{netip.MustParsePrefix(synth.ClusterCIDR)}
	for _, cleared := range []bool{true, false} {
		b.Run(fmt.Sprint("cleared=", cleared), func(b *testing.B) {
			v := snapshot.NewView()
			v.Apply(snapshot.Changes{Full: true, Objects: objs})
			var ov overlayer
			x := policy.NewCompiler()
			anns := map[string]*announcement{}
			var compile, overlaid time.Duration
			deltas := 0
			sync := func() {
				t0 := time.Now()
				s, done := ov.overlay(v.Snapshot(synth.NodeName, cidrs), v, anns)
				if cleared && len(anns) > 0 {
					s.Seq, s.PodDelta = 0, nil
				}
				t1 := time.Now()
				x.Compile(s)
				overlaid, compile = overlaid+t1.Sub(t0), compile+time.Since(t1)
				if x.UsedPodDelta() {
					deltas++
				}
				for _, key := range done {
					delete(anns, key)
				}
			}
			sync()
			b.ResetTimer()
			compile, overlaid, deltas = 0, 0, 0
			for i := range b.N {
				p := pod("ns1", fmt.Sprint("new", i), synth.NodeName, map[string]string{"app": "app3", "role": "db"})
				key := "ns1/" + p.Name
				ip := netip.AddrFrom4([4]byte{10, 0, 200 + byte(i>>8), byte(i)})
				sp := snapshot.NewPod(p)
				v.Apply(snapshot.Changes{Pods: map[string]*snapshot.Pod{key: sp}})
				anns[key] = &announcement{namespace: "ns1", name: p.Name, ips: []netip.Addr{ip}, pod: sp}
				sync()
				caught := *sp
				caught.IPs = []netip.Addr{ip}
				v.Apply(snapshot.Changes{Pods: map[string]*snapshot.Pod{key: &caught}})
				sync()
				if len(anns) > 0 {
					b.Fatalf("announcement of %s not done after the source caught up", key)
				}
			}
			syncs := float64(2 * b.N)
			b.ReportMetric(float64(compile.Microseconds())/1e3/syncs, "compile-ms/sync")
			b.ReportMetric(float64(overlaid.Microseconds())/1e3/syncs, "overlay-ms/sync")
			b.ReportMetric(float64(deltas)/syncs, "deltas/sync")
		})
	}
}
