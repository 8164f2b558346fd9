//go:build integration

package source

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"

	kubeclient "github.com/weir-cni/weir/controller/kube"
	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/integration/kube"
	"github.com/weir-cni/weir/policy"
)

// snapshotWaiter runs a KubeSource against a real API server and waits,
// kick by kick, for the snapshot of node n1 to satisfy a condition.
type snapshotWaiter struct {
	t     *testing.T
	src   *KubeSource
	kicks chan struct{}
}

func (w *snapshotWaiter) waitFor(what string, ok func(policy.Snapshot) string) policy.Snapshot {
	w.t.Helper()
	deadline := time.After(60 * time.Second)
	var why string
	for {
		o, err := w.src.Objects()
		if err == nil {
			s := snapshot.Build("n1", nil, o)
			if why = ok(s); why == "" {
				return s
			}
		} else {
			why = err.Error()
		}
		select {
		case <-w.kicks:
		case <-deadline:
			w.t.Fatalf("%s: not reflected: %s", what, why)
		}
	}
}

func snapPod(s policy.Snapshot, ns, name string) *policy.Pod {
	for i := range s.Pods {
		if s.Pods[i].Namespace == ns && s.Pods[i].Name == name {
			return &s.Pods[i]
		}
	}
	return nil
}

func snapNS(s policy.Snapshot, name string) *policy.Namespace {
	for i := range s.Namespaces {
		if s.Namespaces[i].Name == name {
			return &s.Namespaces[i]
		}
	}
	return nil
}

func TestKubeSourceAgainstAPIServer(t *testing.T) {
	c := kube.StartT(t, kube.Options{})
	ctx := context.Background()
	w := runSource(t, c.RestConfig)
	src := w.src

	if _, err := kube.CreateNamespace(ctx, c.Client, "inf", map[string]string{"team": "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CreateNode(ctx, c.Client, "n1", []string{"10.244.1.0/24"}, "192.168.77.11"); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CreatePod(ctx, c.Client, kube.Pod{Namespace: "inf", Name: "web", Node: "n1",
		Labels: map[string]string{"app": "web"}, IPs: []string{"10.244.1.5"},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}); err != nil {
		t.Fatal(err)
	}
	port := intstrPort(8080)
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "inf", Name: "web-in"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}}},
		}}
	if _, err := kube.CreatePolicy(ctx, c.Client, np); err != nil {
		t.Fatal(err)
	}

	w.waitFor("initial objects", func(s policy.Snapshot) string {
		want := policy.Node{Name: "n1", Addrs: []netip.Addr{netip.MustParseAddr("192.168.77.11")},
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}}
		if fmt.Sprint(s.Node) != fmt.Sprint(want) {
			return fmt.Sprintf("node %+v, want %+v", s.Node, want)
		}
		if ns := snapNS(s, "inf"); ns == nil || ns.Labels["team"] != "a" {
			return fmt.Sprintf("namespace inf = %+v", ns)
		}
		p := snapPod(s, "inf", "web")
		if p == nil {
			return "pod inf/web missing"
		}
		wantPod := fmt.Sprint(policy.Pod{Namespace: "inf", Name: "web", Node: "n1", Labels: map[string]string{"app": "web"},
			IPs: []netip.Addr{netip.MustParseAddr("10.244.1.5")}, Ports: []policy.ContainerPort{{Name: "http", Protocol: "TCP", Port: 8080}}})
		if fmt.Sprint(*p) != wantPod {
			return fmt.Sprintf("pod %+v, want %s", *p, wantPod)
		}
		if len(s.Policies) != 1 || s.Policies[0].Name != "web-in" || s.Policies[0].ManagedFields != nil {
			return fmt.Sprintf("policies %v", s.Policies)
		}
		return ""
	})

	if err := kube.SetPodLabels(ctx, c.Client, "inf", "web", map[string]string{"app": "db"}); err != nil {
		t.Fatal(err)
	}
	w.waitFor("pod label change", func(s policy.Snapshot) string {
		if p := snapPod(s, "inf", "web"); p == nil || p.Labels["app"] != "db" {
			return fmt.Sprintf("pod %+v", p)
		}
		return ""
	})

	if err := kube.SetNamespaceLabels(ctx, c.Client, "inf", map[string]string{"team": "b"}); err != nil {
		t.Fatal(err)
	}
	w.waitFor("namespace label change", func(s policy.Snapshot) string {
		if ns := snapNS(s, "inf"); ns == nil || ns.Labels["team"] != "b" {
			return fmt.Sprintf("namespace %+v", ns)
		}
		return ""
	})

	if err := kube.DeletePod(ctx, c.Client, "inf", "web"); err != nil {
		t.Fatal(err)
	}
	if err := kube.DeletePolicy(ctx, c.Client, "inf", "web-in"); err != nil {
		t.Fatal(err)
	}
	w.waitFor("pod and policy delete", func(s policy.Snapshot) string {
		if p := snapPod(s, "inf", "web"); p != nil || len(s.Policies) != 0 {
			return fmt.Sprintf("pod %+v, %d policies", p, len(s.Policies))
		}
		return ""
	})

	got, err := src.GetPod(ctx, "inf", "web")
	if err == nil {
		t.Errorf("GetPod after delete = %v, want not found", got.Name)
	}
}

func intstrPort(p int32) intstr.IntOrString { return intstr.FromInt32(p) }

// runSource starts a KubeSource on the agent's client of cfg, configured
// by configure, and stops it at cleanup.
func runSource(t *testing.T, cfg *rest.Config, configure ...func(*KubeSource)) *snapshotWaiter {
	t.Helper()
	client, err := kubeclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	src := NewKubeSource(client, 0)
	for _, f := range configure {
		f(src)
	}
	w := &snapshotWaiter{t: t, src: src, kicks: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func() {
			select {
			case w.kicks <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w
}

func TestKubeSourceKeepsStateThroughAPIServerOutage(t *testing.T) {
	c := kube.StartT(t, kube.Options{})
	ctx := context.Background()
	if _, err := kube.CreateNamespace(ctx, c.Client, "out", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CreatePod(ctx, c.Client, kube.Pod{Namespace: "out", Name: "a", Node: "n1",
		Labels: map[string]string{"app": "a"}, IPs: []string{"10.244.1.7"}}); err != nil {
		t.Fatal(err)
	}
	w := runSource(t, c.RestConfig)
	w.waitFor("pod before the outage", func(s policy.Snapshot) string {
		if snapPod(s, "out", "a") == nil {
			return "pod out/a missing"
		}
		return ""
	})

	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	// Fail-static: the cache still answers, complete, while the API
	// server is gone.
	o, err := w.src.Objects()
	if err != nil {
		t.Fatalf("Objects during the outage: %v", err)
	}
	if s := snapshot.Build("n1", nil, o); snapPod(s, "out", "a") == nil {
		t.Fatal("pod out/a dropped from the cache during the outage")
	}

	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if err := kube.SetPodLabels(ctx, c.Client, "out", "a", map[string]string{"app": "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CreatePod(ctx, c.Client, kube.Pod{Namespace: "out", Name: "new", Node: "n1",
		IPs: []string{"10.244.1.8"}}); err != nil {
		t.Fatal(err)
	}
	w.waitFor("changes after the API server came back", func(s policy.Snapshot) string {
		if p := snapPod(s, "out", "a"); p == nil || p.Labels["app"] != "b" {
			return fmt.Sprintf("pod out/a = %+v", p)
		}
		if snapPod(s, "out", "new") == nil {
			return "pod out/new missing"
		}
		return ""
	})
}

func TestKubeSourceStartedBeforeAPIServer(t *testing.T) {
	c := kube.StartT(t, kube.Options{})
	ctx := context.Background()
	if _, err := kube.CreateNamespace(ctx, c.Client, "early", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	// A client that reports each failed request, by resource.
	failed := make(chan string, 100)
	cfg := rest.CopyConfig(c.RestConfig)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				select {
				case failed <- path.Base(req.URL.Path):
				default:
				}
			}
			return resp, err
		})
	})
	w := runSource(t, cfg)
	// Once every informer has failed a request, the source must still have
	// neither kicked nor offered a (partial) view.
	seen := map[string]bool{}
	for len(seen) < 4 {
		select {
		case r := <-failed:
			seen[r] = true
		case <-time.After(60 * time.Second):
			t.Fatalf("failed requests seen only for %v", seen)
		}
	}
	if _, err := w.src.Objects(); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("Objects with the API server down: err = %v, want ErrNotSynced", err)
	}
	select {
	case <-w.kicks:
		t.Fatal("kicked with the API server down")
	default:
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	w.waitFor("sync once the API server is up", func(s policy.Snapshot) string {
		if snapNS(s, "early") == nil {
			return "namespace early missing"
		}
		return ""
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
