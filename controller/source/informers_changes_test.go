package source

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/weir-cni/weir/controller/kube/kubetest"
	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/controller/snapshot/snapshottest"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// TestKubeSourceChangesMatchFullRelist drives a KubeSource's informers
// through adds, relabels, deletes, a tombstone, namespace and node changes
// and checks, after each, that a view fed only by Changes converges to the
// snapshot of a full listing of the caches.
func TestKubeSourceChangesMatchFullRelist(t *testing.T) {
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns1", Labels: map[string]string{"team": "a"}}},
		node("n1", []string{"10.0.0.0/24"}, "192.168.0.1"),
		pod("ns1", "web", "n1", map[string]string{"app": "web"}, "10.0.0.5"),
		pod("ns1", "db", "n2", map[string]string{"app": "db"}, "10.0.1.5"),
	)
	started := watchStarted(client)
	src := NewKubeSource(kubetest.Clientset(client), 0)
	if _, err := src.Changes(); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("Changes before sync: err = %v, want ErrNotSynced", err)
	}
	kicks, stop := startKicks(t, src)
	defer stop()
	ctx := context.Background()
	waitKick(t, kicks, "sync")
	waitWatches(t, started)
	v := snapshot.NewView()
	c, err := src.Changes()
	if err != nil || !c.Full {
		t.Fatalf("first Changes: full = %v, err = %v; want a full listing", c.Full, err)
	}
	v.Apply(c)
	converge := func(step string) { convergeView(t, step, src, v, kicks, false) }
	pods := client.CoreV1().Pods("ns1")
	steps := []struct {
		name string
		do   func() error
	}{
		{"pod relabelled", func() error {
			_, err := pods.Update(ctx, pod("ns1", "web", "n1", map[string]string{"app": "other"}, "10.0.0.5"), metav1.UpdateOptions{})
			return err
		}},
		{"pod added", func() error {
			_, err := pods.Create(ctx, pod("ns1", "new", "n1", nil, "10.0.0.9"), metav1.CreateOptions{})
			return err
		}},
		{"pod deleted", func() error { return pods.Delete(ctx, "db", metav1.DeleteOptions{}) }},
		{"pod delete seen only as a tombstone", func() error {
			p, err := src.GetPod(ctx, "ns1", "new")
			if err != nil {
				return err
			}
			// A relist that finds the pod gone: the cache drops it and the
			// handler gets the last known state wrapped in a tombstone.
			if err := src.pods.GetIndexer().Delete(p); err != nil {
				return err
			}
			src.handler(kindPods, &src.synced, func() { kicks <- struct{}{} }).OnDelete(
				cache.DeletedFinalStateUnknown{Key: "ns1/new", Obj: p})
			return nil
		}},
		{"namespace relabelled", func() error {
			_, err := client.CoreV1().Namespaces().Update(ctx,
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns1", Labels: map[string]string{"team": "b"}}}, metav1.UpdateOptions{})
			return err
		}},
		{"local node address changed", func() error {
			_, err := client.CoreV1().Nodes().Update(ctx, node("n1", []string{"10.0.0.0/24"}, "192.168.0.7"), metav1.UpdateOptions{})
			return err
		}},
		{"policy added", func() error {
			_, err := client.NetworkingV1().NetworkPolicies("ns1").Create(ctx,
				&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "deny"}}, metav1.CreateOptions{})
			return err
		}},
		{"namespace deleted while its pod remains", func() error {
			return client.CoreV1().Namespaces().Delete(ctx, "ns1", metav1.DeleteOptions{})
		}},
		{"node deleted", func() error { return client.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{}) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		converge(st.name)
	}
}

// convergeView feeds src's Changes to v until v's snapshot equals that of
// a full listing of src. Changes must not list everything again, unless
// full says it is due: then one of them must.
func convergeView(t *testing.T, step string, src *KubeSource, v *snapshot.View, kicks <-chan struct{}, full bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	listed := false
	for {
		c, err := src.Changes()
		if err != nil {
			t.Fatalf("%s: Changes: %v", step, err)
		}
		if c.Full && !full {
			t.Fatalf("%s: Changes listed everything again", step)
		}
		listed = listed || c.Full
		v.Apply(c)
		o, err := src.Objects()
		if err != nil {
			t.Fatal(err)
		}
		got, want := snapshottest.Canonical(v.Snapshot("n1", nil)), snapshottest.Canonical(snapshot.Build("n1", nil, o))
		if reflect.DeepEqual(got, want) && listed == full {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: view fed by Changes (full listing seen: %v): %s", step, listed, snapshottest.DescribeDiff(got, want))
		}
		select {
		case <-kicks:
		case <-time.After(50 * time.Millisecond):
		}
	}
}
