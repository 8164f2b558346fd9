package controller

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/weir-cni/weir/controller/kube"
)

// Lease elects, among the agents of a cluster, the one that does a
// cluster-wide task, on a coordination.k8s.io Lease, the way client-go's
// leader election does (whose package links client-go's whole Clientset;
// see package kube): an agent takes the Lease when it is free, released,
// or has not been renewed for its duration as this agent observed it
// (never comparing clocks), renews it every RetryPeriod, and gives up
// leading when no renewal succeeded for RenewDeadline.
type Lease struct {
	// Leases returns the client of a namespace's Leases (kube.Client's
	// Leases); Run takes Namespace's.
	Leases func(namespace string) kube.LeaseClient
	// Namespace and Name locate the Lease.
	Namespace, Name string
	// Identity names this agent in the Lease; unique per agent (its
	// node's name).
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's;
	// zero: 15s, 10s and 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Log                                       *slog.Logger

	// client is Leases(Namespace), set by Run.
	client kube.LeaseClient
	// observed is the Lease's spec when last read or written, first seen
	// at observedAt (this agent's clock).
	observed   coordinationv1.LeaseSpec
	observedAt time.Time
	// jitter is wait.Jitter, or a test's stand-in.
	jitter func(d time.Duration, maxFactor float64) time.Duration
}

// leaseJitter is the jitter factor of the tries to take the Lease,
// client-go's leaderelection.JitterFactor: a try waits RetryPeriod and up
// to 1.2 times more, so that agents started together (a DaemonSet rolled
// out) do not all poll the API server in step.
const leaseJitter = 1.2

// Run takes part in the election until ctx ends. Each time this agent wins
// the Lease it runs lead, with a context that ends when the Lease is lost;
// lead should return then. When ctx ends, Run releases the Lease if it
// holds it, so another agent takes over without waiting for it to expire,
// and returns once lead has returned.
func (l *Lease) Run(ctx context.Context, lead func(context.Context)) error {
	if l.Leases == nil || l.Namespace == "" || l.Name == "" || l.Identity == "" {
		return fmt.Errorf("lease %s/%s: client, namespace, name and identity are required", l.Namespace, l.Name)
	}
	l.client = l.Leases(l.Namespace)
	for l.acquire(ctx) {
		l.hold(ctx, lead)
	}
	return nil
}

func (l *Lease) log() *slog.Logger {
	if l.Log != nil {
		return l.Log
	}
	return slog.Default()
}

func (l *Lease) key() string { return l.Namespace + "/" + l.Name }

// acquire tries until this agent holds the Lease (true) or ctx ends
// (false), waiting RetryPeriod jittered by leaseJitter after each try, as
// client-go's wait.JitterUntil does (sliding: the wait starts when the try
// ends).
func (l *Lease) acquire(ctx context.Context) bool {
	jitter := l.jitter
	if jitter == nil {
		jitter = wait.Jitter
	}
	retry := orDefault(l.RetryPeriod, 2*time.Second)
	for ctx.Err() == nil {
		if l.tryHold(ctx, time.Now().Add(orDefault(l.RenewDeadline, 10*time.Second))) {
			return true
		}
		t := time.NewTimer(jitter(retry, leaseJitter))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return false
}

// hold runs lead while it renews the Lease, until a renewal deadline
// passes or ctx ends; then it ends lead's context, waits for lead, and,
// when ctx ended, releases the Lease.
func (l *Lease) hold(ctx context.Context, lead func(context.Context)) {
	leadCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	l.log().Info("holding the lease", "lease", l.key(), "identity", l.Identity)
	go func() {
		defer close(done)
		lead(leadCtx)
	}()
	l.renew(leadCtx)
	cancel()
	<-done
	l.log().Info("no longer holding the lease", "lease", l.key(), "identity", l.Identity)
	if ctx.Err() != nil {
		l.release()
	}
}

// renew renews the Lease every RetryPeriod until ctx ends, no renewal
// succeeded for RenewDeadline (an attempt never runs past it: a slow API
// server cannot keep this agent leading after another may have taken the
// Lease), or the Lease names another holder.
func (l *Lease) renew(ctx context.Context) {
	deadline := orDefault(l.RenewDeadline, 10*time.Second)
	t := time.NewTicker(orDefault(l.RetryPeriod, 2*time.Second))
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		switch {
		case l.tryHold(ctx, last.Add(deadline)):
			last = time.Now()
		case ctx.Err() != nil:
			return
		case l.heldByOther():
			l.log().Warn("lease taken by another agent: giving it up", "lease", l.key(), "holder", deref(l.observed.HolderIdentity))
			return
		case time.Since(last) >= deadline:
			l.log().Warn("lease not renewed in time: giving it up", "lease", l.key(), "renew-deadline", deadline)
			return
		}
	}
}

// heldByOther tells whether the Lease as last read names another holder.
func (l *Lease) heldByOther() bool {
	holder := deref(l.observed.HolderIdentity)
	return holder != "" && holder != l.Identity
}

// tryHold takes or renews the Lease, if it is free, released, held by
// this agent, or expired, giving up at until; it reports whether this
// agent holds it now.
func (l *Lease) tryHold(ctx context.Context, until time.Time) bool {
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	now := time.Now()
	cur, err := l.client.Get(ctx, l.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		created, err := l.client.Create(ctx, l.taken(&coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: l.Namespace, Name: l.Name}}, now), metav1.CreateOptions{})
		return l.wrote(created, err, now)
	}
	if err != nil {
		l.log().Debug("read lease", "lease", l.key(), "err", err)
		return false
	}
	if !apiequality.Semantic.DeepEqual(cur.Spec, l.observed) {
		// Seen when the read returned, not when it started: a read that
		// took long may return a renewal made late in it, and the
		// holder's duration runs from that renewal (client-go stamps its
		// observed record so too). The expiry is then checked against
		// now, from before the read: later still.
		l.observed, l.observedAt = cur.Spec, time.Now()
	}
	if l.heldByOther() {
		expires := l.observedAt.Add(time.Duration(deref(cur.Spec.LeaseDurationSeconds)) * time.Second)
		if now.Before(expires) {
			return false
		}
	}
	updated, err := l.client.Update(ctx, l.taken(cur.DeepCopy(), now), metav1.UpdateOptions{})
	return l.wrote(updated, err, now)
}

// taken is lease held by this agent, renewed at now: acquired now, one
// more transition, when another held it.
func (l *Lease) taken(lease *coordinationv1.Lease, now time.Time) *coordinationv1.Lease {
	t := metav1.NewMicroTime(now)
	s := &lease.Spec
	if deref(s.HolderIdentity) != l.Identity {
		if s.HolderIdentity != nil {
			s.LeaseTransitions = ptr(deref(s.LeaseTransitions) + 1)
		}
		s.HolderIdentity, s.AcquireTime = ptr(l.Identity), &t
	}
	s.LeaseDurationSeconds = ptr(int32(orDefault(l.LeaseDuration, 15*time.Second) / time.Second))
	s.RenewTime = &t
	return lease
}

// wrote notes the Lease a write returned; it reports whether the write
// succeeded.
func (l *Lease) wrote(lease *coordinationv1.Lease, err error, now time.Time) bool {
	if err != nil {
		l.log().Debug("write lease", "lease", l.key(), "err", err)
		return false
	}
	l.observed, l.observedAt = lease.Spec, now
	return true
}

// release frees the Lease if this agent holds it (as client-go does: no
// holder, a one-second duration), so another agent takes it at its next
// try.
func (l *Lease) release() {
	ctx, cancel := context.WithTimeout(context.Background(), orDefault(l.RenewDeadline, 10*time.Second))
	defer cancel()
	cur, err := l.client.Get(ctx, l.Name, metav1.GetOptions{})
	if err != nil || deref(cur.Spec.HolderIdentity) != l.Identity {
		return
	}
	upd := cur.DeepCopy()
	t := metav1.NewMicroTime(time.Now())
	upd.Spec.HolderIdentity, upd.Spec.LeaseDurationSeconds = ptr(""), ptr(int32(1))
	upd.Spec.AcquireTime, upd.Spec.RenewTime = &t, &t
	if _, err := l.client.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		l.log().Warn("release lease", "lease", l.key(), "err", err)
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func ptr[T any](v T) *T { return &v }

// deref is *p, or T's zero value when p is nil.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
