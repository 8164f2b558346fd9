package controller

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/internal/fixtures"
)

func TestAcceptedCondition(t *testing.T) {
	c := AcceptedCondition(3, nil)
	if c.Type != "Accepted" || c.Status != metav1.ConditionTrue || c.Reason != "Accepted" ||
		c.Message != "enforced by weir" || c.ObservedGeneration != 3 {
		t.Errorf("no problems: %+v", c)
	}
	c = AcceptedCondition(4, []string{"rule 0: domainNames are not enforced", "rule 2: x"})
	if c.Status != metav1.ConditionFalse || c.Reason != "NotFullyEnforced" || c.ObservedGeneration != 4 ||
		c.Message != "rule 0: domainNames are not enforced; rule 2: x" {
		t.Errorf("problems: %+v", c)
	}
	long := AcceptedCondition(1, []string{strings.Repeat("é", 20000)}).Message // 40000 bytes
	if len(long) > 32768 || len(long) < 32767 || !utf8.ValidString(long) {
		t.Errorf("long message: %d bytes, valid UTF-8 %v; want at most 32768, cut on a character", len(long), utf8.ValidString(long))
	}
}

// statusFixture is a ClusterPolicyStatus on a fake clientset whose Latest
// reads the fake's current objects (a cache always up to date).
type statusFixture struct {
	client *cnpfake.Clientset
	w      *ClusterPolicyStatus
}

func newStatusFixture(t *testing.T, objs ...runtime.Object) *statusFixture {
	t.Helper()
	f := &statusFixture{client: cnpfake.NewSimpleClientset(objs...)}
	f.w = &ClusterPolicyStatus{Client: f.client.PolicyV1beta1().ClusterNetworkPolicies(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Latest: func(name string) *cnpv1beta1.ClusterNetworkPolicy {
			p, err := f.client.PolicyV1beta1().ClusterNetworkPolicies().Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				return nil
			}
			return p
		}}
	return f
}

// statusWrites counts the status updates the fake received.
func (f *statusFixture) statusWrites() int {
	n := 0
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

func (f *statusFixture) get(t *testing.T, name string) *cnpv1beta1.ClusterNetworkPolicy {
	t.Helper()
	p, err := f.client.PolicyV1beta1().ClusterNetworkPolicies().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// report reports the fake's policy name with problems and writes.
func (f *statusFixture) report(t *testing.T, name string, problems ...string) {
	t.Helper()
	p := f.get(t, name)
	f.w.Report([]*cnpv1beta1.ClusterNetworkPolicy{p}, map[string][]string{name: problems, "other": {"not this one"}})
	if err := f.w.writeAll(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func cnpAt(name string, gen int64) *cnpv1beta1.ClusterNetworkPolicy {
	p := fixtures.ClusterPolicy(name, cnpv1beta1.AdminTier, 1)
	p.Generation, p.UID = gen, types.UID("uid-"+name)
	return p
}

// TestStatusWriterWritesOnlyChanges follows one policy's condition:
// written when missing (next to another controller's condition, which
// stays), not written again while the same, flipped with a new
// lastTransitionTime when problems appear, its message updated without one
// while the status stays, and flipped back.
func TestStatusWriterWritesOnlyChanges(t *testing.T) {
	p := cnpAt("admin", 2)
	other := metav1.Condition{Type: "Programmed", Status: metav1.ConditionTrue, Reason: "ByOthers",
		LastTransitionTime: metav1.NewTime(time.Unix(1000, 0))}
	p.Status.Conditions = []metav1.Condition{other}
	f := newStatusFixture(t, p)
	accepted := func() metav1.Condition {
		t.Helper()
		got := f.get(t, "admin")
		if c := apimeta.FindStatusCondition(got.Status.Conditions, "Programmed"); c == nil || *c != other {
			t.Fatalf("the other controller's condition became %+v", c)
		}
		c := apimeta.FindStatusCondition(got.Status.Conditions, ConditionAccepted)
		if c == nil {
			t.Fatal("no Accepted condition")
		}
		return *c
	}
	steps := []struct {
		name     string
		problems []string
		writes   int
		status   metav1.ConditionStatus
		message  string
		newTime  bool
	}{
		{"first report", nil, 1, metav1.ConditionTrue, "enforced by weir", true},
		{"same again", nil, 1, metav1.ConditionTrue, "enforced by weir", false},
		{"problems appear", []string{"a", "b"}, 2, metav1.ConditionFalse, "a; b", true},
		{"other problems", []string{"c"}, 3, metav1.ConditionFalse, "c", false},
		{"same problems again", []string{"c"}, 3, metav1.ConditionFalse, "c", false},
		{"problems gone", nil, 4, metav1.ConditionTrue, "enforced by weir", true},
	}
	var last metav1.Time
	for _, st := range steps {
		if st.newTime {
			time.Sleep(1100 * time.Millisecond) // lastTransitionTime has seconds
		}
		f.report(t, "admin", st.problems...)
		c := accepted()
		if n := f.statusWrites(); n != st.writes {
			t.Errorf("%s: %d status writes, want %d", st.name, n, st.writes)
		}
		if c.Status != st.status || c.Message != st.message || c.ObservedGeneration != 2 {
			t.Errorf("%s: condition %+v, want status %s, message %q, observedGeneration 2", st.name, c, st.status, st.message)
		}
		if moved := !c.LastTransitionTime.Equal(&last); moved != st.newTime || c.LastTransitionTime.IsZero() {
			t.Errorf("%s: lastTransitionTime %v (was %v), want a new one: %v", st.name, c.LastTransitionTime, last, st.newTime)
		}
		last = c.LastTransitionTime
	}
}

// TestStatusWriterRetriesConflictsFromTheLatestCopy: a write that
// conflicts is retried from Latest's copy, keeping what the other writer
// put there.
func TestStatusWriterRetriesConflictsFromTheLatestCopy(t *testing.T) {
	f := newStatusFixture(t, cnpAt("admin", 1))
	var conflicts atomic.Int32
	f.client.PrependReactor("update", "clusternetworkpolicies", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" || conflicts.Add(1) > 1 {
			return false, nil, nil
		}
		// Another controller wrote first (through the tracker: the fake
		// holds its lock while reactors run).
		gvr := cnpv1beta1.SchemeGroupVersion.WithResource("clusternetworkpolicies")
		obj, err := f.client.Tracker().Get(gvr, "", "admin")
		if err != nil {
			t.Error(err)
			return false, nil, nil
		}
		p := obj.(*cnpv1beta1.ClusterNetworkPolicy).DeepCopy()
		p.Status.Conditions = []metav1.Condition{{Type: "Other", Status: metav1.ConditionTrue, Reason: "X",
			LastTransitionTime: metav1.Now()}}
		if err := f.client.Tracker().Update(gvr, p, ""); err != nil {
			t.Error(err)
		}
		return true, nil, apierrors.NewConflict(cnpv1beta1.Resource("clusternetworkpolicies"), "admin", nil)
	})
	f.report(t, "admin")
	got := f.get(t, "admin").Status.Conditions
	if conflicts.Load() != 2 || len(got) != 2 || apimeta.FindStatusCondition(got, "Other") == nil ||
		!apimeta.IsStatusConditionTrue(got, ConditionAccepted) {
		t.Errorf("after %d attempts: conditions %+v; want Other kept and Accepted True", conflicts.Load(), got)
	}
}

// TestStatusWriterLeavesOthersAlone: a policy gone from the API server, or
// recreated under its name (another uid) since it was compiled, is not
// written; a policy written once is not written again while the cache
// still shows the version the write went over.
func TestStatusWriterLeavesOthersAlone(t *testing.T) {
	f := newStatusFixture(t, cnpAt("admin", 1))
	recreated := cnpAt("admin", 1)
	recreated.UID = "older"
	f.w.Report([]*cnpv1beta1.ClusterNetworkPolicy{recreated, cnpAt("gone", 1)}, nil)
	if err := f.w.writeAll(context.Background()); err != nil || f.statusWrites() != 0 {
		t.Errorf("wrote %d statuses (err %v) for a policy of another uid and a gone one; want none", f.statusWrites(), err)
	}

	stale := f.get(t, "admin")
	f.w.Latest = func(string) *cnpv1beta1.ClusterNetworkPolicy { return stale } // a cache that lags behind
	f.w.Report([]*cnpv1beta1.ClusterNetworkPolicy{stale}, nil)
	for range 3 {
		if err := f.w.writeAll(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.statusWrites(); n != 1 {
		t.Errorf("%d status writes with a lagging cache, want 1", n)
	}
}

// TestStatusWriterWakesOnReports runs the writer's lead loop: a report
// that changes what a policy should have is written without waiting for
// the recheck; a report that changes nothing does not wake it.
func TestStatusWriterWakesOnReports(t *testing.T) {
	f := newStatusFixture(t, cnpAt("admin", 1))
	p := f.get(t, "admin")
	wakes := func(problems ...string) bool {
		f.w.Report([]*cnpv1beta1.ClusterNetworkPolicy{p}, map[string][]string{"admin": problems})
		select {
		case <-f.w.wake:
			return true
		default:
			return false
		}
	}
	for i, tc := range []struct {
		problems []string
		want     bool
	}{{nil, true}, {nil, false}, {[]string{"x"}, true}, {[]string{"x"}, false}, {[]string{"y"}, true}} {
		if got := wakes(tc.problems...); got != tc.want {
			t.Errorf("report %d (problems %v): woke %v, want %v", i, tc.problems, got, tc.want)
		}
	}

	f.w.Recheck = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.w.lead(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the condition written", func() bool {
		return apimeta.IsStatusConditionFalse(f.get(t, "admin").Status.Conditions, ConditionAccepted)
	})
	f.w.Report([]*cnpv1beta1.ClusterNetworkPolicy{p}, nil)
	waitFor(t, "the condition flipped", func() bool {
		return apimeta.IsStatusConditionTrue(f.get(t, "admin").Status.Conditions, ConditionAccepted)
	})
}

// recReporter records the agent's reports.
type recReporter struct {
	mu       sync.Mutex
	policies []*cnpv1beta1.ClusterNetworkPolicy
	problems map[string][]string
	reports  int
}

func (r *recReporter) Report(policies []*cnpv1beta1.ClusterNetworkPolicy, problems map[string][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.policies, r.problems = policies, problems
	r.reports++
}

// TestAgentReportsClusterPolicies: after each applied ruleset the agent
// reports the snapshot's ClusterNetworkPolicies, with the problems its
// compiler has for them (here: a domainNames peer in a Deny rule, which
// the API allows in Accept rules only).
func TestAgentReportsClusterPolicies(t *testing.T) {
	withDomains := cnpAt("a", 1)
	withDomains.Spec.Egress = []cnpv1beta1.ClusterNetworkPolicyEgressRule{{Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
		To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{DomainNames: []cnpv1beta1.DomainName{"api.example.com"}}}}}
	policies := []*cnpv1beta1.ClusterNetworkPolicy{cnpAt("b", 1), withDomains}
	rep := &recReporter{}
	problems := map[string][]string{"a": {"Admin cnp/a egress rule 0: Deny: peer 0: domainNames peers are allowed in Accept rules only (matches nothing)"}}
	a := &Agent{Node: "n1", Source: &memSource{objs: snapshot.Objects{ClusterPolicies: policies}}, Applier: &recApplier{},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), ClusterPolicyStatus: rep}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "a report", func() bool {
		rep.mu.Lock()
		defer rep.mu.Unlock()
		return rep.reports > 0
	})
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if len(rep.policies) != 2 || rep.policies[0].Name != "a" || rep.policies[1].Name != "b" ||
		!reflect.DeepEqual(rep.problems, problems) {
		t.Errorf("reported %v with problems %v; want a, b with %v", rep.policies, rep.problems, problems)
	}
}
