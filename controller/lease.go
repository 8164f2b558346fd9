package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Lease elects, among the agents of a cluster, the one that does a
// cluster-wide task: client-go's leader election on a coordination.k8s.io
// Lease.
type Lease struct {
	Client kubernetes.Interface
	// Namespace and Name locate the Lease.
	Namespace, Name string
	// Identity names this agent in the Lease; unique per agent (its
	// node's name).
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's;
	// zero: 15s, 10s and 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Log                                       *slog.Logger

	// leading is held while lead runs: one lead at a time, none after Run.
	leading sync.Mutex
}

// Run takes part in the election until ctx ends. Each time this agent wins
// the Lease it runs lead, with a context that ends when the Lease is lost;
// lead should return then. When ctx ends, Run releases the Lease if it
// holds it, so another agent takes over without waiting for it to expire,
// and returns once lead has returned.
func (l *Lease) Run(ctx context.Context, lead func(context.Context)) error {
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	lease := l.Namespace + "/" + l.Name
	cfg := leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: l.Namespace, Name: l.Name},
			Client:     l.Client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: l.Identity},
		},
		Name:            l.Name,
		LeaseDuration:   orDefault(l.LeaseDuration, 15*time.Second),
		RenewDeadline:   orDefault(l.RenewDeadline, 10*time.Second),
		RetryPeriod:     orDefault(l.RetryPeriod, 2*time.Second),
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			// client-go starts this in a goroutine and does not wait for
			// it: leading keeps it from overlapping the next one, or Run's
			// return.
			OnStartedLeading: func(ctx context.Context) {
				l.leading.Lock()
				defer l.leading.Unlock()
				if ctx.Err() != nil {
					return
				}
				log.Info("holding the lease", "lease", lease, "identity", l.Identity)
				lead(ctx)
				log.Info("no longer holding the lease", "lease", lease, "identity", l.Identity)
			},
			OnStoppedLeading: func() {},
		},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(cfg)
		if err != nil {
			return fmt.Errorf("leader election on lease %s: %w", lease, err)
		}
		le.Run(ctx) // returns when the Lease is lost, or ctx ends
	}
	l.leading.Lock() // a running lead has returned
	defer l.leading.Unlock()
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
