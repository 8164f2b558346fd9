//go:build integration

package controller

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	kubeclient "github.com/weir-cni/weir/controller/kube"
	"github.com/weir-cni/weir/controller/source"
	"github.com/weir-cni/weir/integration/kube"
	"github.com/weir-cni/weir/internal/fixtures"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// cnpSource is a KubeSource following ClusterNetworkPolicies (the CRD
// rechecked every 200ms).
func cnpSource(t *testing.T, c *kube.Cluster) *source.KubeSource {
	t.Helper()
	client := agentClient(t, c.RestConfig)
	src := source.NewKubeSource(client, 0)
	src.ClusterPolicies, src.CRDRecheck = client.ClusterNetworkPolicies(), 200*time.Millisecond
	return src
}

// startSource runs a cnpSource until the test ends.
func startSource(t *testing.T, c *kube.Cluster) *source.KubeSource {
	t.Helper()
	src := cnpSource(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = src.Run(ctx, func() {}); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return src
}

// TestAgentPicksUpClusterPoliciesOnceTheCRDExists runs the agent on a
// cluster without the CRD: it syncs, and once the CRD is installed and a
// policy created, its next compile has the policy (as its reports show);
// when the CRD is deleted, the policy leaves.
func TestAgentPicksUpClusterPoliciesOnceTheCRDExists(t *testing.T) {
	c := kube.StartT(t, kube.Options{})
	ctx := context.Background()
	rep := &recReporter{}
	a := &Agent{Node: "n1", Source: cnpSource(t, c), Applier: &recApplier{}, Log: quiet, ClusterPolicyStatus: rep}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = a.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	reported := func(want ...string) func() bool {
		return func() bool {
			rep.mu.Lock()
			defer rep.mu.Unlock()
			var got []string
			for _, p := range rep.policies {
				got = append(got, p.Name)
			}
			return rep.reports > 0 && strings.Join(got, ",") == strings.Join(want, ",")
		}
	}
	waitLong(t, "a sync without the CRD", func() bool { return a.Status().Synced })
	waitLong(t, "a report of no policy", reported())

	if err := kube.InstallClusterPolicyCRD(ctx, c.RestConfig, kube.CRDExperimental); err != nil {
		t.Fatal(err)
	}
	if _, err := cnpclient.NewForConfigOrDie(c.RestConfig).PolicyV1beta1().ClusterNetworkPolicies().Create(ctx,
		fixtures.ClusterPolicy("admin", cnpv1beta1.AdminTier, 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLong(t, "the policy compiled", reported("admin"))

	if err := kube.DeleteClusterPolicyCRD(ctx, c.RestConfig); err != nil {
		t.Fatal(err)
	}
	waitLong(t, "the policy gone with the CRD", reported())
}

// statusWrites counts a client's status writes to ClusterNetworkPolicies.
type statusWrites struct{ n atomic.Int32 }

// client is the agent's client on cfg, counting its status writes.
func (s *statusWrites) client(t *testing.T, cfg *rest.Config) *kubeclient.Client {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/clusternetworkpolicies/") &&
				strings.HasSuffix(req.URL.Path, "/status") {
				s.n.Add(1)
			}
			return rt.RoundTrip(req)
		})
	})
	return agentClient(t, cfg)
}

// agentClient is the agent's API client on cfg.
func agentClient(t *testing.T, cfg *rest.Config) *kubeclient.Client {
	t.Helper()
	c, err := kubeclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// statusWriter is a ClusterPolicyStatus of identity on a short Lease,
// rechecking every 300ms, with its own counting client, run until stop or
// the test's end.
type statusWriter struct {
	*ClusterPolicyStatus
	writes statusWrites
	stop   func()
}

func startWriter(t *testing.T, c *kube.Cluster, src *source.KubeSource, identity string) *statusWriter {
	t.Helper()
	w := &statusWriter{}
	w.ClusterPolicyStatus = &ClusterPolicyStatus{Client: w.writes.client(t, c.RestConfig).ClusterNetworkPolicyStatus(),
		Latest: src.ClusterPolicy, Log: quiet, Recheck: 300 * time.Millisecond,
		Lease: &Lease{Leases: agentClient(t, c.RestConfig).Leases, Namespace: "kube-system", Name: ClusterPolicyStatusLease,
			Identity: identity, LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
			Log: quiet}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", identity, err)
		}
		close(done)
	}()
	var once atomic.Bool
	w.stop = func() {
		if once.CompareAndSwap(false, true) {
			cancel()
			<-done
		}
	}
	t.Cleanup(w.stop)
	return w
}

// accepted returns policy name's Accepted condition, nil if none.
func accepted(t *testing.T, c *kube.Cluster, name string) *metav1.Condition {
	t.Helper()
	p, err := cnpclient.NewForConfigOrDie(c.RestConfig).PolicyV1beta1().ClusterNetworkPolicies().Get(context.Background(),
		name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return apimeta.FindStatusCondition(p.Status.Conditions, ConditionAccepted)
}

// createCNP installs the CRD if need be and creates policy name; it
// returns it as the source's cache has it.
func createCNP(t *testing.T, c *kube.Cluster, src *source.KubeSource, name string) *cnpv1beta1.ClusterNetworkPolicy {
	t.Helper()
	if _, err := cnpclient.NewForConfigOrDie(c.RestConfig).PolicyV1beta1().ClusterNetworkPolicies().Create(context.Background(),
		fixtures.ClusterPolicy(name, cnpv1beta1.AdminTier, 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLong(t, "policy "+name+" cached", func() bool { return src.ClusterPolicy(name) != nil })
	return src.ClusterPolicy(name)
}

// TestStatusWriterAgainstAPIServer: the writer, holding a real Lease,
// writes the Accepted condition, flips it when problems appear and go,
// and writes nothing while nothing changes.
func TestStatusWriterAgainstAPIServer(t *testing.T) {
	c := kube.StartT(t, kube.Options{})
	if err := kube.InstallClusterPolicyCRD(context.Background(), c.RestConfig, kube.CRDExperimental); err != nil {
		t.Fatal(err)
	}
	src := startSource(t, c)
	p := createCNP(t, c, src, "admin")
	w := startWriter(t, c, src, "n1")
	policies := []*cnpv1beta1.ClusterNetworkPolicy{p}
	is := func(status metav1.ConditionStatus, message string) func() bool {
		return func() bool {
			cond := accepted(t, c, "admin")
			return cond != nil && cond.Status == status && cond.Message == message && cond.ObservedGeneration == 1
		}
	}

	w.Report(policies, nil)
	waitLong(t, "Accepted True", is(metav1.ConditionTrue, "enforced by weir"))
	first := *accepted(t, c, "admin")
	time.Sleep(1100 * time.Millisecond) // lastTransitionTime has seconds
	w.Report(policies, map[string][]string{"admin": {"rule 0: domainNames are not enforced"}})
	waitLong(t, "Accepted False", is(metav1.ConditionFalse, "rule 0: domainNames are not enforced"))
	if flipped := accepted(t, c, "admin"); !flipped.LastTransitionTime.After(first.LastTransitionTime.Time) ||
		flipped.Reason != ReasonNotFullyEnforced {
		t.Errorf("flipped condition %+v after %+v: want reason NotFullyEnforced and a later lastTransitionTime", flipped, first)
	}

	writes := w.writes.n.Load()
	for range 3 { // and rechecks meanwhile
		w.Report([]*cnpv1beta1.ClusterNetworkPolicy{p}, map[string][]string{"admin": {"rule 0: domainNames are not enforced"}})
		time.Sleep(time.Second)
	}
	if n := w.writes.n.Load(); n != writes || writes != 2 {
		t.Errorf("%d status writes after reports that changed nothing, %d before; want 2 and 2", n, writes)
	}

	w.Report(policies, nil)
	waitLong(t, "Accepted True again", is(metav1.ConditionTrue, "enforced by weir"))
}

// TestOnlyTheLeaderWritesStatus runs two writers on one Lease: only the
// holder writes; when it stops (releasing the Lease), the other takes over.
func TestOnlyTheLeaderWritesStatus(t *testing.T) {
	c := kube.StartT(t, kube.Options{})
	ctx := context.Background()
	if err := kube.InstallClusterPolicyCRD(ctx, c.RestConfig, kube.CRDExperimental); err != nil {
		t.Fatal(err)
	}
	src := startSource(t, c)
	policies := []*cnpv1beta1.ClusterNetworkPolicy{createCNP(t, c, src, "admin")}
	writers := map[string]*statusWriter{"n1": startWriter(t, c, src, "n1"), "n2": startWriter(t, c, src, "n2")}
	var holder string
	waitLong(t, "a lease holder", func() bool {
		l, err := c.Client.CoordinationV1().Leases("kube-system").Get(ctx, ClusterPolicyStatusLease, metav1.GetOptions{})
		if err == nil && l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		return writers[holder] != nil
	})
	for _, w := range writers {
		w.Report(policies, nil)
	}
	waitLong(t, "Accepted written", func() bool { return accepted(t, c, "admin") != nil })
	time.Sleep(time.Second)
	other := "n1"
	if holder == "n1" {
		other = "n2"
	}
	if w, o := writers[holder].writes.n.Load(), writers[other].writes.n.Load(); w != 1 || o != 0 {
		t.Fatalf("holder %s wrote %d times, %s %d times; want 1 and 0", holder, w, other, o)
	}

	writers[holder].stop()
	for _, w := range writers {
		w.Report(policies, map[string][]string{"admin": {"x"}})
	}
	waitLong(t, "the other writer took over", func() bool {
		cond := accepted(t, c, "admin")
		return cond != nil && cond.Status == metav1.ConditionFalse
	})
	if n := writers[other].writes.n.Load(); n != 1 {
		t.Errorf("%s wrote %d times after taking over, want 1", other, n)
	}
}

// waitLong is waitFor for the API server's pace.
func waitLong(t *testing.T, what string, f func() bool) {
	t.Helper()
	waitWithin(t, time.Minute, what, f)
}
