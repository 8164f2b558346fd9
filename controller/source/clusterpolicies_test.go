package source

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/weir-cni/weir/controller/kube/kubetest"
	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/internal/fixtures"
)

// crdServer is a fake ClusterNetworkPolicy clientset whose discovery
// serves the CRD while served is set, and fails once with fail when set.
type crdServer struct {
	client *cnpfake.Clientset
	served atomic.Bool
	fail   atomic.Pointer[error]
	// watched is closed at the informer's first watch.
	watched map[string]chan struct{}
}

func newCRDServer(served bool, objs ...runtime.Object) *crdServer {
	c := &crdServer{client: cnpfake.NewSimpleClientset(objs...)}
	c.served.Store(served)
	c.client.Resources = []*metav1.APIResourceList{{GroupVersion: cnpv1beta1.GroupVersion.String(),
		APIResources: []metav1.APIResource{{Name: clusterPoliciesResource, Kind: "ClusterNetworkPolicy"}}}}
	c.client.PrependReactor("get", "resource", func(k8stesting.Action) (bool, runtime.Object, error) {
		if err := c.fail.Swap(nil); err != nil {
			return true, nil, *err
		}
		if !c.served.Load() {
			return true, nil, apierrors.NewNotFound(cnpv1beta1.Resource(clusterPoliciesResource), "")
		}
		return false, nil, nil
	})
	c.watched = watchesStarted(&c.client.Fake, clusterPoliciesResource)
	return c
}

// servedLog records what OnClusterPoliciesServed was told.
type servedLog struct {
	mu  sync.Mutex
	got []bool
}

func (l *servedLog) add(served bool) {
	l.mu.Lock()
	l.got = append(l.got, served)
	l.mu.Unlock()
}

func (l *servedLog) equal(want ...bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Equal(l.got, want)
}

// cnpSource is a KubeSource following crd's ClusterNetworkPolicies,
// rechecking the CRD every few milliseconds.
func cnpSource(crd *crdServer, served *servedLog) *KubeSource {
	src := NewKubeSource(kubetest.Clientset(fake.NewClientset(node("n1", []string{"10.0.0.0/24"}, "192.168.0.1"))), 0)
	src.ClusterPolicies = kubetest.ClusterPolicies(crd.client)
	src.CRDRecheck, src.OnClusterPoliciesServed = 20*time.Millisecond, served.add
	return src
}

func TestKubeSourceFollowsClusterPolicies(t *testing.T) {
	crd := newCRDServer(true, fixtures.ClusterPolicy("admin", cnpv1beta1.AdminTier, 1))
	var served servedLog
	src := cnpSource(crd, &served)
	kicks, stop := startKicks(t, src)
	defer stop()
	waitKick(t, kicks, "sync")
	waitWatches(t, crd.watched)
	if !served.equal(true) {
		t.Errorf("told served %v, want [true]", served.got)
	}
	v := snapshot.NewView()
	convergeView(t, "initial listing", src, v, kicks, true)
	if s := v.Snapshot("n1", nil); len(s.ClusterPolicies) != 1 || s.ClusterPolicies[0].Name != "admin" {
		t.Fatalf("cluster policies %v, want admin", s.ClusterPolicies)
	}

	ctx := context.Background()
	cnps := crd.client.PolicyV1beta1().ClusterNetworkPolicies()
	// A status write must not kick; the spec change after it must (one
	// informer's events arrive in order; see TestKubeSourceRun).
	p := fixtures.ClusterPolicy("admin", cnpv1beta1.AdminTier, 1)
	p.ResourceVersion = "2"
	p.Status.Conditions = []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted"}}
	if _, err := cnps.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p.ResourceVersion, p.Spec.Priority = "3", 5
	if _, err := cnps.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitKick(t, kicks, "spec change")
	if len(kicks) != 0 {
		t.Errorf("status write kicked (%d extra kicks)", len(kicks))
	}
	if got := src.ClusterPolicy("admin"); got == nil || got.Spec.Priority != 5 || got.ManagedFields != nil {
		t.Errorf("at the first kick ClusterPolicy(admin) = %+v, want the stripped policy at priority 5", got)
	}
	convergeView(t, "spec change", src, v, kicks, false)

	if _, err := cnps.Create(ctx, fixtures.ClusterPolicy("base", cnpv1beta1.BaselineTier, 0), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitClusterPolicies(t, src, "admin", "base")
	convergeView(t, "policy added", src, v, kicks, false)
	if err := cnps.Delete(ctx, "admin", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitClusterPolicies(t, src, "base")
	convergeView(t, "policy deleted", src, v, kicks, false)
	if s := v.Snapshot("n1", nil); len(s.ClusterPolicies) != 1 || s.ClusterPolicies[0].Name != "base" {
		t.Errorf("cluster policies %v, want base", s.ClusterPolicies)
	}
	if src.ClusterPolicy("admin") != nil {
		t.Error("ClusterPolicy(admin) after its delete")
	}
}

// TestKubeSourceSyncsWithoutTheCRDAndFollowsItLater: with no CRD the
// source syncs (after discovery answered: a failed discovery is reported
// and retried), says so once, and lists no ClusterNetworkPolicies; when the
// CRD appears it follows them and hands over a full listing with them;
// when the CRD goes, they vanish.
func TestKubeSourceSyncsWithoutTheCRDAndFollowsItLater(t *testing.T) {
	crd := newCRDServer(false, fixtures.ClusterPolicy("admin", cnpv1beta1.AdminTier, 1))
	down := error(errors.New("discovery unavailable"))
	crd.fail.Store(&down)
	var served servedLog
	src := cnpSource(crd, &served)
	reported := make(chan string, 10)
	src.OnWatchError = func(resource string, err error) { reported <- resource + ": " + err.Error() }
	kicks, stop := startKicks(t, src)
	defer stop()
	waitKick(t, kicks, "sync without the CRD")
	if r := <-reported; !strings.HasPrefix(r, clusterPoliciesResource+": ") || !strings.Contains(r, "discovery unavailable") {
		t.Errorf("OnWatchError got %q", r)
	}
	v := snapshot.NewView()
	convergeView(t, "initial listing", src, v, kicks, true)
	if s := v.Snapshot("n1", nil); len(s.ClusterPolicies) != 0 || len(s.Nodes) != 1 {
		t.Fatalf("without the CRD: %d cluster policies, %d nodes; want 0, 1", len(s.ClusterPolicies), len(s.Nodes))
	}
	time.Sleep(100 * time.Millisecond) // several rechecks
	if !served.equal(false) {
		t.Errorf("told served %v, want [false] once", served.got)
	}

	crd.served.Store(true)
	waitClusterPolicies(t, src, "admin")
	convergeView(t, "CRD installed", src, v, kicks, true)
	if s := v.Snapshot("n1", nil); len(s.ClusterPolicies) != 1 {
		t.Fatalf("after the CRD appeared: %d cluster policies, want 1", len(s.ClusterPolicies))
	}
	waitWatches(t, crd.watched)
	if _, err := crd.client.PolicyV1beta1().ClusterNetworkPolicies().Create(context.Background(),
		fixtures.ClusterPolicy("base", cnpv1beta1.BaselineTier, 0), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitClusterPolicies(t, src, "admin", "base")
	convergeView(t, "policy added", src, v, kicks, false)

	crd.served.Store(false)
	waitClusterPolicies(t, src)
	convergeView(t, "CRD removed", src, v, kicks, true)
	if s := v.Snapshot("n1", nil); len(s.ClusterPolicies) != 0 || src.ClusterPolicy("base") != nil {
		t.Errorf("after the CRD went: %d cluster policies, want 0", len(s.ClusterPolicies))
	}
	if !served.equal(false, true, false) {
		t.Errorf("told served %v, want [false true false]", served.got)
	}
}

// waitClusterPolicies waits until src's listing holds exactly the
// ClusterNetworkPolicies names (sorted).
func waitClusterPolicies(t *testing.T, src *KubeSource, names ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		o, err := src.Objects()
		if err != nil {
			t.Fatal(err)
		}
		got := []string{}
		for _, p := range o.ClusterPolicies {
			got = append(got, p.Name)
		}
		slices.Sort(got)
		if slices.Equal(got, append([]string{}, names...)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster policies %v, want %v", got, names)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
