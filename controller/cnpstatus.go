package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weir-cni/weir/controller/kube"
)

// The condition weir writes to each ClusterNetworkPolicy's status. The API
// leaves condition types and reasons to implementations.
const (
	// ConditionAccepted is its type.
	ConditionAccepted = "Accepted"
	// ReasonAccepted (status True): weir enforces the policy as written.
	ReasonAccepted = "Accepted"
	// ReasonNotFullyEnforced (status False): weir enforces the policy
	// except what the message lists.
	ReasonNotFullyEnforced = "NotFullyEnforced"
	// AcceptedMessage is the message of status True.
	AcceptedMessage = "enforced by weir"
	// ClusterPolicyStatusLease is the Lease that elects the one agent
	// writing it.
	ClusterPolicyStatusLease = "weir-cnp-status"
	// maxConditionMessage is the API's limit on a condition's message.
	maxConditionMessage = 32768
	// defaultStatusRecheck is ClusterPolicyStatus.Recheck's default.
	defaultStatusRecheck = time.Minute
)

// ClusterPolicyReporter is told, after each ruleset the agent applied,
// the ClusterNetworkPolicies it was compiled from and each one's problems
// by name (a policy absent from problems has none). Report must not block.
type ClusterPolicyReporter interface {
	Report(policies []*cnpv1beta1.ClusterNetworkPolicy, problems map[string][]string)
}

// AcceptedCondition is the Accepted condition of a policy at generation
// with problems: True when it has none, False with the problems joined by
// "; " (cut to the API's limit) otherwise. LastTransitionTime is left for
// the writer.
func AcceptedCondition(generation int64, problems []string) metav1.Condition {
	c := metav1.Condition{Type: ConditionAccepted, ObservedGeneration: generation,
		Status: metav1.ConditionTrue, Reason: ReasonAccepted, Message: AcceptedMessage}
	if len(problems) > 0 {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, ReasonNotFullyEnforced, cutUTF8(strings.Join(problems, "; "), maxConditionMessage)
	}
	return c
}

// cutUTF8 cuts s to at most n bytes, on a character boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ClusterPolicyStatus writes the Accepted condition (see
// AcceptedCondition) to the status of each ClusterNetworkPolicy the agent
// reported, while this agent holds Lease: one agent writes for the
// cluster. It writes a policy only when its condition differs from what it
// should be; it keeps the conditions of other types, and
// lastTransitionTime when the status stays. It also corrects, every
// Recheck, what others changed, and retries what failed.
type ClusterPolicyStatus struct {
	// Client writes the status subresource.
	Client kube.StatusWriter[*cnpv1beta1.ClusterNetworkPolicy]
	// Latest returns the informer's latest copy of a policy, nil when it
	// has none (source.KubeSource.ClusterPolicy): what a write starts
	// from, again after a conflict.
	Latest func(name string) *cnpv1beta1.ClusterNetworkPolicy
	// Lease elects the agent that writes.
	Lease *Lease
	Log   *slog.Logger
	// Recheck is how often the writing agent compares every policy with
	// what it should be (default 1m); reports wake it as well.
	Recheck time.Duration

	mu   sync.Mutex
	want map[string]wantedStatus // replaced by Report, never modified
	wake chan struct{}
	// written holds, per policy, the object the last write returned and
	// the resourceVersion it was written over, until the informer's copy
	// moves past that version; only the leading goroutine uses it.
	written map[string]writtenStatus
}

// wantedStatus is the condition one policy should have.
type wantedStatus struct {
	uid  types.UID // of the policy compiled: a policy recreated under its name waits for its own report
	cond metav1.Condition
}

type writtenStatus struct {
	over string
	obj  *cnpv1beta1.ClusterNetworkPolicy
}

var _ ClusterPolicyReporter = (*ClusterPolicyStatus)(nil)

// Report records the condition each policy should have and, when that
// changed, wakes the writer. It never blocks.
func (w *ClusterPolicyStatus) Report(policies []*cnpv1beta1.ClusterNetworkPolicy, problems map[string][]string) {
	want := make(map[string]wantedStatus, len(policies))
	for _, p := range policies {
		want[p.Name] = wantedStatus{uid: p.UID, cond: AcceptedCondition(p.Generation, problems[p.Name])}
	}
	w.mu.Lock()
	changed := !maps.Equal(w.want, want)
	w.want = want
	wake := w.wakeLocked()
	w.mu.Unlock()
	if changed {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

func (w *ClusterPolicyStatus) wakeLocked() chan struct{} {
	if w.wake == nil {
		w.wake = make(chan struct{}, 1)
	}
	return w.wake
}

// Run takes part in the Lease's election and writes while it holds the
// Lease, until ctx ends.
func (w *ClusterPolicyStatus) Run(ctx context.Context) error {
	return w.Lease.Run(ctx, w.lead)
}

// lead writes what differs now, and again on every report, every Recheck,
// and after a failure with backoff, until ctx ends.
func (w *ClusterPolicyStatus) lead(ctx context.Context) {
	recheck := orDefault(w.Recheck, defaultStatusRecheck)
	w.mu.Lock()
	wake := w.wakeLocked()
	w.mu.Unlock()
	w.written = nil // a copy of another term may be stale
	tick := time.NewTicker(recheck)
	defer tick.Stop()
	var backoff time.Duration
	for {
		var retryAfter <-chan time.Time
		if err := w.writeAll(ctx); err != nil && ctx.Err() == nil {
			backoff = min(max(2*backoff, time.Second), recheck)
			w.log().Warn("write ClusterNetworkPolicy status; retrying", "err", err, "retry", backoff)
			retryAfter = time.After(backoff)
		} else {
			backoff = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		case <-retryAfter:
		}
	}
}

func (w *ClusterPolicyStatus) log() *slog.Logger {
	if w.Log == nil {
		return slog.Default()
	}
	return w.Log
}

// writeAll writes every policy whose condition differs from the one
// reported last.
func (w *ClusterPolicyStatus) writeAll(ctx context.Context) error {
	w.mu.Lock()
	want := w.want
	w.mu.Unlock()
	if w.written == nil {
		w.written = map[string]writtenStatus{}
	}
	maps.DeleteFunc(w.written, func(name string, _ writtenStatus) bool { _, ok := want[name]; return !ok })
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if err := w.write(ctx, name, want[name]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// write sets policy name's Accepted condition to want, unless it is so
// already, retrying conflicts from the latest copy. A policy gone, or
// replaced by another of its name, is left alone.
func (w *ClusterPolicyStatus) write(ctx context.Context, name string, want wantedStatus) error {
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur := w.latest(name)
		if cur == nil || cur.UID != want.uid {
			return nil
		}
		conds := slices.Clone(cur.Status.Conditions)
		if !apimeta.SetStatusCondition(&conds, want.cond) {
			return nil
		}
		upd := cur.DeepCopy()
		upd.Status.Conditions = conds
		out, err := w.Client.UpdateStatus(ctx, upd, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		w.written[name] = writtenStatus{over: cur.ResourceVersion, obj: out}
		w.log().Info("ClusterNetworkPolicy status written", "policy", name, "generation", want.cond.ObservedGeneration,
			"accepted", want.cond.Status, "reason", want.cond.Reason)
		return nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("update status of clusternetworkpolicy %s: %w", name, err)
	}
	return nil
}

// latest is the informer's copy of policy name or, while that still has
// the version the last write went over, the object that write returned.
func (w *ClusterPolicyStatus) latest(name string) *cnpv1beta1.ClusterNetworkPolicy {
	cur := w.Latest(name)
	if m, ok := w.written[name]; ok {
		if cur != nil && cur.ResourceVersion == m.over {
			return m.obj
		}
		delete(w.written, name)
	}
	return cur
}
