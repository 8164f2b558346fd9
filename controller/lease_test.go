package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/weir-cni/weir/controller/kube"
)

// leaseRun is one agent's Lease.Run on a fake API server: leading reports
// each lead's start, lost each end of its context.
type leaseRun struct {
	leading, lost chan struct{}
	stop          func()
}

func runLease(t *testing.T, cs *fake.Clientset, identity string) *leaseRun {
	t.Helper()
	return runLeaseOf(t, &Lease{Leases: fakeLeases(cs), Identity: identity,
		LeaseDuration: time.Second, RenewDeadline: 300 * time.Millisecond, RetryPeriod: 50 * time.Millisecond})
}

// fakeLeases is cs's Leases client of each namespace.
func fakeLeases(cs *fake.Clientset) func(string) kube.LeaseClient {
	return func(ns string) kube.LeaseClient { return cs.CoordinationV1().Leases(ns) }
}

// runLeaseOf runs l (its Namespace, Name and Log set here).
func runLeaseOf(t *testing.T, l *Lease) *leaseRun {
	t.Helper()
	identity := l.Identity
	if l.Namespace == "" {
		l.Namespace = "kube-system"
	}
	l.Name, l.Log = "test", slog.New(slog.NewTextHandler(io.Discard, nil))
	r := &leaseRun{leading: make(chan struct{}, 10), lost: make(chan struct{}, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.Run(ctx, func(ctx context.Context) {
			r.leading <- struct{}{}
			<-ctx.Done()
			r.lost <- struct{}{}
		}); err != nil {
			t.Errorf("%s: Run: %v", identity, err)
		}
	}()
	r.stop = func() { cancel(); <-done }
	t.Cleanup(r.stop)
	return r
}

func holder(t *testing.T, cs *fake.Clientset) *coordinationv1.Lease {
	t.Helper()
	l, err := cs.CoordinationV1().Leases("kube-system").Get(context.Background(), "test", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func within(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestLeaseOneLeaderHandsOverOnStop: of two agents one leads; the other
// does not while the Lease is renewed; when the leader stops it releases
// the Lease and the other takes it at once (long before it would expire).
func TestLeaseOneLeaderHandsOverOnStop(t *testing.T) {
	cs := fake.NewClientset()
	a := runLease(t, cs, "a")
	within(t, a.leading, "a leading")
	b := runLease(t, cs, "b")
	select {
	case <-b.leading:
		t.Fatal("b leads while a renews the lease")
	case <-time.After(1500 * time.Millisecond): // longer than the lease's duration
	}
	if h := holder(t, cs).Spec.HolderIdentity; h == nil || *h != "a" {
		t.Fatalf("holder %v, want a", h)
	}
	a.stop()
	within(t, a.lost, "a's lead ending")
	within(t, b.leading, "b leading")
	l := holder(t, cs)
	if *l.Spec.HolderIdentity != "b" || l.Spec.LeaseTransitions == nil || *l.Spec.LeaseTransitions != 1 {
		t.Errorf("lease holder %q transitions %d, want b after 1", *l.Spec.HolderIdentity, deref(l.Spec.LeaseTransitions))
	}
}

// TestLeaseTakesExpiredLease: a Lease its holder stopped renewing is taken
// once its duration passed since this agent first saw it unchanged.
func TestLeaseTakesExpiredLease(t *testing.T) {
	now := metav1.NewMicroTime(time.Now())
	cs := fake.NewClientset(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "test",
		ResourceVersion: "1"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("gone"),
		LeaseDurationSeconds: ptr(int32(1)), RenewTime: &now, AcquireTime: &now}})
	start := time.Now()
	b := runLease(t, cs, "b")
	within(t, b.leading, "b leading")
	if d := time.Since(start); d < time.Second {
		t.Errorf("b took a live lease after %v, before its 1s duration", d)
	}
}

// slowGets is a Lease client whose first read takes slow, returning the
// Lease as it is at the end: returned is when that read returned.
type slowGets struct {
	kube.LeaseClient
	slow     time.Duration
	once     sync.Once
	returned time.Time
}

func (c *slowGets) Get(ctx context.Context, name string, o metav1.GetOptions) (*coordinationv1.Lease, error) {
	c.once.Do(func() { time.Sleep(c.slow) })
	l, err := c.LeaseClient.Get(ctx, name, o)
	if c.returned.IsZero() {
		c.returned = time.Now()
	}
	return l, err
}

// TestLeaseDurationFromTheRead: a Lease held by another agent, read by a
// read that took long, expires its duration after the read returned, not
// after it started: the holder may have renewed it just before.
func TestLeaseDurationFromTheRead(t *testing.T) {
	now := metav1.NewMicroTime(time.Now())
	c := &slowGets{LeaseClient: fake.NewClientset(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system",
		Name: "test", ResourceVersion: "1"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("other"),
		LeaseDurationSeconds: ptr(int32(1)), RenewTime: &now, AcquireTime: &now}}).CoordinationV1().Leases("kube-system"),
		slow: 700 * time.Millisecond}
	b := runLeaseOf(t, &Lease{Leases: func(string) kube.LeaseClient { return c }, Identity: "b",
		LeaseDuration: time.Second, RenewDeadline: 300 * time.Millisecond, RetryPeriod: 50 * time.Millisecond})
	within(t, b.leading, "b leading")
	// Only a lower bound: scheduling can make it later, never earlier.
	if d := time.Since(c.returned); d < time.Second {
		t.Errorf("b took the lease %v after the read that saw it returned, before its 1s duration", d)
	}
}

// TestLeaseLostWhenRenewalsFail: when the API server refuses renewals for
// RenewDeadline, the lead's context ends.
func TestLeaseLostWhenRenewalsFail(t *testing.T) {
	cs := fake.NewClientset()
	var refuse atomic.Bool
	// Installed before the agent runs: the fake's reactor chain is not
	// safe to change while it is read.
	cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		return refuse.Load(), nil, errors.New("refused")
	})
	a := runLease(t, cs, "a")
	within(t, a.leading, "a leading")
	refuse.Store(true)
	within(t, a.lost, "a's lead ending")
}

// slowLeases is a Lease client whose updates, once slowFrom is set and
// passed, fail at once until then and afterwards hang until their
// context ends; renewed is when an update last succeeded.
type slowLeases struct {
	kube.LeaseClient
	mu       sync.Mutex
	slowFrom time.Time
	renewed  time.Time
}

func (c *slowLeases) Update(ctx context.Context, l *coordinationv1.Lease, o metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	c.mu.Lock()
	from := c.slowFrom
	c.mu.Unlock()
	switch {
	case from.IsZero():
		out, err := c.LeaseClient.Update(ctx, l, o)
		if err == nil {
			c.mu.Lock()
			c.renewed = time.Now()
			c.mu.Unlock()
		}
		return out, err
	case time.Now().Before(from):
		return nil, errors.New("refused")
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestLeaseRenewalNeverOverrunsItsDeadline: renewals that fail fast and
// then one that hangs end the lead RenewDeadline after the last renewal,
// not a whole RenewDeadline after the hanging attempt started (by then
// another agent may hold the Lease).
func TestLeaseRenewalNeverOverrunsItsDeadline(t *testing.T) {
	const deadline = 2 * time.Second
	c := &slowLeases{LeaseClient: fake.NewClientset().CoordinationV1().Leases("kube-system")}
	a := runLeaseOf(t, &Lease{Leases: func(string) kube.LeaseClient { return c }, Identity: "a", LeaseDuration: 3 * time.Second, RenewDeadline: deadline,
		RetryPeriod: 100 * time.Millisecond})
	within(t, a.leading, "a leading")
	time.Sleep(300 * time.Millisecond) // a renewal or two
	c.mu.Lock()
	last := c.renewed
	c.slowFrom = last.Add(deadline * 3 / 4) // the attempt after this hangs
	c.mu.Unlock()
	within(t, a.lost, "a's lead ending")
	// Without the deadline, the hanging attempt ends 1.75 deadlines
	// after the last renewal.
	if late := time.Since(last); late > deadline*3/2 {
		t.Errorf("the lead ended %v after the last renewal, want about the renew deadline %v", late, deadline)
	}
}

// TestLeaseLostToAnotherHolder: a leader that reads another holder in the
// Lease stops leading at once, not at its renew deadline.
func TestLeaseLostToAnotherHolder(t *testing.T) {
	cs := fake.NewClientset()
	a := runLeaseOf(t, &Lease{Leases: fakeLeases(cs), Identity: "a",
		LeaseDuration: time.Minute, RenewDeadline: 30 * time.Second, RetryPeriod: 50 * time.Millisecond})
	within(t, a.leading, "a leading")
	l := holder(t, cs)
	l.Spec.HolderIdentity = ptr("b")
	if _, err := cs.CoordinationV1().Leases("kube-system").Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	within(t, a.lost, "a's lead ending (within 10 s, its renew deadline is 30 s)")
}

// TestLeaseInItsNamespace: the Lease is read and written in Namespace,
// through the client Leases gives for it.
func TestLeaseInItsNamespace(t *testing.T) {
	cs := fake.NewClientset()
	a := runLeaseOf(t, &Lease{Leases: fakeLeases(cs), Namespace: "weir-system", Identity: "a",
		LeaseDuration: time.Second, RenewDeadline: 300 * time.Millisecond, RetryPeriod: 50 * time.Millisecond})
	within(t, a.leading, "a leading")
	l, err := cs.CoordinationV1().Leases("weir-system").Get(context.Background(), "test", metav1.GetOptions{})
	if err != nil || deref(l.Spec.HolderIdentity) != "a" || l.Namespace != "weir-system" {
		t.Fatalf("lease in weir-system: %v, %v; want held by a", l, err)
	}
	if l, err := cs.CoordinationV1().Leases("kube-system").Get(context.Background(), "test", metav1.GetOptions{}); err == nil {
		t.Errorf("a lease in kube-system too: %v", l.Spec)
	}
}

// TestLeaseTriesJittered: an agent waiting for a Lease another holds waits
// RetryPeriod jittered by client-go's factor 1.2 between its tries.
func TestLeaseTriesJittered(t *testing.T) {
	now := metav1.NewMicroTime(time.Now())
	cs := fake.NewClientset(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "test",
		ResourceVersion: "1"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("other"),
		LeaseDurationSeconds: ptr(int32(3600)), RenewTime: &now, AcquireTime: &now}})
	type call struct {
		d      time.Duration
		factor float64
		at     time.Time
	}
	calls := make(chan call, 100)
	// The stand-in returns a wait far longer than RetryPeriod: the tries
	// must be that far apart, so the jittered duration is the one waited,
	// not RetryPeriod.
	const retry, jittered = 20 * time.Millisecond, 150 * time.Millisecond
	runLeaseOf(t, &Lease{Leases: fakeLeases(cs), Identity: "b", RetryPeriod: retry,
		jitter: func(d time.Duration, f float64) time.Duration {
			calls <- call{d, f, time.Now()}
			return jittered
		}})
	var last time.Time
	for i := range 3 {
		select {
		case c := <-calls:
			if c.d != retry || c.factor != 1.2 {
				t.Fatalf("jitter(%v, %v), want jitter(%v, 1.2)", c.d, c.factor, retry)
			}
			if i > 0 && c.at.Sub(last) < jittered {
				t.Fatalf("tries %v apart, want at least the jittered wait %v", c.at.Sub(last), jittered)
			}
			last = c.at
		case <-time.After(10 * time.Second):
			t.Fatal("no jittered wait between tries")
		}
	}
}
