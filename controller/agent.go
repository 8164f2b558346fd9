package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// applyTimeout bounds one Apply: the kernel's answer to a netlink batch,
// or the restore processes of the iptables backend.
const applyTimeout = 2 * time.Minute

// Status is what the agent reports about itself.
type Status struct {
	Synced    bool
	LastSync  time.Time
	LastError string
	Syncs     int
	// Problems are the compiler's: input it could not enforce as written
	// (ruleset.Ruleset.Problems).
	Problems []string
	// DataplaneProblems are the backend's: parts of the last applied
	// ruleset it could not express (dataplane.Applier.Apply).
	DataplaneProblems []dataplane.Problem
	Counts            map[string]int
	// RefusedConns counts socket connections closed unserved because
	// the agent was already serving its most at once.
	RefusedConns int
	// LastSyncTimes break the last applied sync down by phase.
	LastSyncTimes agentapi.SyncTimes
}

// Agent compiles the snapshot of one node and applies it, from one worker.
type Agent struct {
	Node         string
	ClusterCIDRs []netip.Prefix
	Source       snapshot.Source
	Applier      dataplane.Applier
	Log          *slog.Logger
	// MinInterval rate-limits syncs: bursts of events collapse into one.
	MinInterval time.Duration
	// Reconcilers run after each applied ruleset (node routes, CNI config),
	// given the cluster's nodes.
	Reconcilers []Reconciler
	// Metrics, when set, records syncs.
	Metrics *Metrics
	// MetricsAuth, when set, guards /metrics (not /healthz and /readyz,
	// which the kubelet probes without credentials).
	MetricsAuth *KubeAuth
	// Pprof serves Go's profiles (net/http/pprof) under /debug/pprof/
	// beside /metrics, behind MetricsAuth when it is set.
	Pprof bool
	// LogDenied, when its Group is set, has isolation drops logged to
	// NFLOG (see DeniedLogger).
	LogDenied policy.DeniedLog
	// PodInterfacePrefix starts the name of the pods' host-side veths
	// (see policy.Snapshot.PodInterfacePrefix; empty: the default).
	PodInterfacePrefix string
	// TierPassMark is the mark bit of an Admin tier Pass (see
	// policy.Snapshot.TierPassMark; 0: the default).
	TierPassMark uint32
	// DNSMark, DNSProxyPort and DNSSetSize shape the domainNames
	// steering (see policy.Snapshot; 0: the defaults).
	DNSMark      uint32
	DNSProxyPort uint16
	DNSSetSize   uint32
	// DNSProxy, if set, is given the ruleset's domainNames rules after
	// each applied sync, holds its answers during an apply that changes
	// them (see holdDNS), and tells explain what pods learned.
	DNSProxy DNSProxy
	// JumpCheckInterval is how often a dataplane.JumpKeeper Applier is asked to put
	// weir's jumps back on top of the built-in chains; 0: never.
	JumpCheckInterval time.Duration
	// RemoveStale, when set, runs once, after the first ruleset is in the
	// kernel: it removes what an earlier run with another backend left
	// (see RemoveStale) and reports what it removed.
	RemoveStale func(context.Context) ([]string, error)
	staleDone   bool
	// dnsGiven are the domainNames rules last given to DNSProxy; only
	// the worker uses them.
	dnsGiven []ruleset.DNSRule
	// ClusterPolicyStatus, when set, is told after each applied ruleset
	// the ClusterNetworkPolicies it was compiled from and their problems
	// (policy.Compiler.ClusterPolicyProblems).
	ClusterPolicyStatus ClusterPolicyReporter

	// sockMaxConns and sockReadTimeout override the socket's limits
	// (maxSocketConns, requestReadTimeout) in tests.
	sockMaxConns    int
	sockReadTimeout time.Duration

	kick chan struct{}
	mu   sync.Mutex
	st   Status
	// rs is the last applied ruleset and snap the snapshot it was compiled
	// from, published together (under mu). snap's pod slice is the
	// worker's own, which it overwrites when it publishes the next.
	rs   ruleset.Ruleset
	snap policy.Snapshot
	// view is the cluster kept up to date from the source's changes, and
	// overlays puts announcements on its snapshots; only the worker uses
	// them.
	view     *snapshot.View
	overlays overlayer
	// anns are pods announced by the plugin, by namespace/name.
	anns map[string]*announcement
	// podCIDRs are this node's pod ranges as the last refresh of the view
	// had them; viewed is closed after the first refresh.
	podCIDRs []netip.Prefix
	viewed   chan struct{}
	// wanted counts announcements; applied is the value wanted had when
	// the last successful sync started. applyCh is closed and replaced on
	// every successful sync.
	wanted, applied uint64
	applyCh         chan struct{}
	// compiler recompiles only what changed since the last sync; only the
	// worker goroutine uses it.
	compiler *policy.Compiler
	// firstEvent is when the oldest change not yet applied was signalled.
	firstEvent time.Time
}

// Reconciler keeps one more piece of node state in line with the cluster.
// It is given the nodes only; the other kinds of Objects are empty.
type Reconciler interface {
	Reconcile(o snapshot.Objects) error
}

// Kick marks work; it never blocks.
func (a *Agent) Kick() {
	a.mu.Lock()
	if a.firstEvent.IsZero() {
		a.firstEvent = time.Now()
	}
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Status returns a copy of the current status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st
}

// published returns the last applied ruleset and the snapshot it was
// compiled from, with a pod slice of the caller's own, and whether any
// sync was applied yet.
func (a *Agent) published() (ruleset.Ruleset, policy.Snapshot, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	snap := a.snap
	snap.Pods = slices.Clone(snap.Pods)
	return a.rs, snap, a.st.Synced
}

// Ruleset returns the last ruleset applied.
func (a *Agent) Ruleset() ruleset.Ruleset {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rs
}

// init prepares the agent's channels; Run calls it.
func (a *Agent) init() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kick == nil {
		a.kick = make(chan struct{}, 1)
		a.applyCh = make(chan struct{})
		a.anns = map[string]*announcement{}
		a.viewed = make(chan struct{})
	}
	if a.Log == nil {
		a.Log = slog.Default()
	}
}

// Run starts the source and the worker; it returns when ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	a.init()
	srcErr := make(chan error, 1)
	go func() { srcErr <- a.Source.Run(ctx, a.Kick) }()
	if k, ok := a.Applier.(dataplane.JumpKeeper); ok && a.JumpCheckInterval > 0 {
		go a.keepJumps(ctx, k, a.JumpCheckInterval)
	}
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-srcErr:
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("source: %w", err)
			}
			return nil
		case <-a.kick:
		}
		if err := a.sync(ctx); err != nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			a.Log.Error("sync failed; kernel keeps the last ruleset", "err", err, "retry", backoff)
			time.AfterFunc(backoff, a.Kick)
			continue
		}
		backoff = 0
		if a.MinInterval > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(a.MinInterval):
			}
		}
	}
}

// sync reads the source, compiles and applies once.
func (a *Agent) sync(ctx context.Context) error {
	start := time.Now()
	a.mu.Lock()
	firstEvent := a.firstEvent
	a.firstEvent = time.Time{}
	a.mu.Unlock()
	snap, objs, gone, err := a.refresh()
	if err != nil {
		a.setErr(err)
		return err
	}
	read := time.Now()
	a.mu.Lock()
	gen := a.wanted
	a.podCIDRs = snap.Node.PodCIDRs
	select {
	case <-a.viewed:
	default:
		close(a.viewed) // the first view
	}
	// A pod deleted before the source saw its addresses is done with its
	// announcement now: the view forgets the delete, even if this sync fails.
	for key, ann := range a.anns {
		if old, ok := gone[key]; ok && sameIncarnation(old, ann.pod) {
			delete(a.anns, key)
		}
	}
	anns := maps.Clone(a.anns) // announcements are never modified, only replaced
	a.mu.Unlock()
	snap, caughtUp := a.overlays.overlay(snap, a.view, anns)
	if a.compiler == nil {
		a.compiler = policy.NewCompiler()
	}
	snap.LogDenied = a.LogDenied
	snap.PodInterfacePrefix = a.PodInterfacePrefix
	snap.TierPassMark = a.TierPassMark
	snap.DNSMark, snap.DNSProxyPort, snap.DNSSetSize = a.DNSMark, a.DNSProxyPort, a.DNSSetSize
	rs := a.compiler.Compile(snap)
	compiled := time.Now()
	held := a.holdDNS(ctx, rs.DNS)
	dpProblems, err := a.apply(ctx, rs)
	if err != nil {
		if held {
			a.DNSProxy.Release() // the kernel keeps the rules the proxy has
		}
		err = fmt.Errorf("apply ruleset: %w", err)
		a.setErr(err)
		return err
	}
	applied := time.Now()
	var rerrs []error
	if err := a.setDNSRules(rs.DNS, held); err != nil {
		rerrs = append(rerrs, fmt.Errorf("dns proxy rules: %w", err))
	}
	a.Metrics.observeSync(read.Sub(start), compiled.Sub(read), applied.Sub(compiled), firstEvent, rs)
	if a.RemoveStale != nil && !a.staleDone {
		a.staleDone = true
		a.removeStale(ctx)
	}
	for _, p := range rs.Problems {
		a.Log.Warn("policy problem", "problem", p)
	}
	for _, p := range dpProblems {
		a.Log.Warn("dataplane problem: left out of the kernel", problemAttrs(p)...)
	}
	a.reportClusterPolicies(snap.ClusterPolicies)
	for _, r := range a.Reconcilers {
		if err := r.Reconcile(objs); err != nil {
			rerrs = append(rerrs, err)
		}
	}
	a.mu.Lock()
	// The pod slice is the view's or the overlay buffer, which the next
	// sync overwrites: the published snapshot gets a copy, into the pod
	// slice of the last one (a fresh clone was most of what a sync
	// allocated), which explain and audit copy (see published).
	pods := append(a.snap.Pods[:0], snap.Pods...)
	clear(pods[len(pods):cap(pods)]) // gone pods' labels and addresses
	snap.Pods = pods
	for _, key := range caughtUp {
		if a.anns[key] == anns[key] { // not announced again since
			delete(a.anns, key)
		}
	}
	a.applied = gen
	close(a.applyCh)
	a.applyCh = make(chan struct{})
	a.rs, a.snap = rs, snap
	a.st.Synced, a.st.LastSync, a.st.LastError = true, time.Now(), ""
	a.st.Syncs++
	a.st.LastSyncTimes = agentapi.SyncTimes{FirstEvent: firstEvent, Start: start, Read: read, Compiled: compiled, Applied: applied}
	a.st.Problems, a.st.DataplaneProblems = rs.Problems, dpProblems
	a.mu.Unlock()
	a.Log.Info("synced", "pods", len(snap.Pods), "policies", len(snap.Policies),
		"read", read.Sub(start), "compile", compiled.Sub(read), "apply", applied.Sub(compiled))
	if err := errors.Join(rerrs...); err != nil {
		a.setErr(err)
		return fmt.Errorf("node state: %w", err)
	}
	return nil
}

// reportClusterPolicies tells ClusterPolicyStatus, if set, the
// ClusterNetworkPolicies the compiler was just given and their problems.
func (a *Agent) reportClusterPolicies(policies []*cnpv1beta1.ClusterNetworkPolicy) {
	if a.ClusterPolicyStatus == nil {
		return
	}
	a.ClusterPolicyStatus.Report(policies, a.compiler.ClusterPolicyProblems())
}

// problemAttrs are the log attributes of a dataplane problem: its policy
// rule, when it has one, and its message.
func problemAttrs(p dataplane.Problem) []any {
	if p.Policy == "" {
		return []any{"problem", p.Message}
	}
	return []any{"policy", p.Policy, "direction", p.Direction, "rule", p.Rule, "problem", p.Message}
}

// apply programs rs within applyTimeout.
func (a *Agent) apply(ctx context.Context, rs ruleset.Ruleset) ([]dataplane.Problem, error) {
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	return a.Applier.Apply(ctx, rs)
}

// refresh brings the agent's view of the cluster up to date, from the
// source's changes when it reports them and from a full listing
// otherwise, and returns the node's snapshot (without announcements) and
// the objects for the reconcilers. The snapshot's pod slice is the view's:
// it stays valid until the next refresh. gone are the pods deleted since
// the last refresh (see snapshot.View.Apply).
func (a *Agent) refresh() (_ policy.Snapshot, _ snapshot.Objects, gone map[string]*snapshot.Pod, _ error) {
	var c snapshot.Changes
	if cs, ok := a.Source.(snapshot.ChangeSource); ok {
		var err error
		if c, err = cs.Changes(); err != nil {
			return policy.Snapshot{}, snapshot.Objects{}, nil, err
		}
	} else {
		objs, err := a.Source.Objects()
		if err != nil {
			return policy.Snapshot{}, snapshot.Objects{}, nil, err
		}
		c = snapshot.Changes{Full: true, Objects: objs}
	}
	if a.view == nil {
		a.view = snapshot.NewView()
	}
	gone = a.view.Apply(c)
	return a.view.Snapshot(a.Node, a.ClusterCIDRs), a.view.Objects(), gone, nil
}

// sameIncarnation reports whether deleted, the pod the view had under a
// key that is now gone (nil if the view never had one), may be announced:
// a deletion of an older pod of the same name (a StatefulSet's, recreated)
// does not end the announcement of its successor.
func sameIncarnation(deleted, announced *snapshot.Pod) bool {
	return deleted == nil || announced == nil || deleted.UID == "" || announced.UID == "" ||
		deleted.UID == announced.UID
}

// Announce records that the plugin wired pod namespace/name with ips and
// returns once a ruleset that includes them is in the kernel, or ctx ends.
// The pod must be known to the source (or fetchable through snapshot.PodGetter): its
// labels decide which policies apply, so an unknown pod is an error rather
// than a guess. Only this node's pods, with addresses from this node's
// podCIDRs, are taken (see admitAnnouncement).
func (a *Agent) Announce(ctx context.Context, namespace, name string, ips []netip.Addr) error {
	a.init()
	pod, err := a.lookupPod(ctx, namespace, name)
	if err != nil {
		return err
	}
	podCIDRs, err := a.nodePodCIDRs(ctx)
	if err != nil {
		return err
	}
	if err := admitAnnouncement(a.Node, podCIDRs, pod, ips); err != nil {
		return err
	}
	a.mu.Lock()
	a.anns[cache.NewObjectName(namespace, name).String()] = &announcement{namespace: namespace, name: name, ips: ips, pod: pod}
	a.wanted++
	want := a.wanted
	a.mu.Unlock()
	a.Kick()
	for {
		a.mu.Lock()
		done, ch := a.applied >= want, a.applyCh
		a.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for ruleset with pod %s/%s: %w", namespace, name, ctx.Err())
		case <-ch:
		}
	}
}

// nodePodCIDRs returns this node's podCIDRs as the agent's view has them,
// waiting until ctx ends for the view's first refresh.
func (a *Agent) nodePodCIDRs(ctx context.Context) ([]netip.Prefix, error) {
	select {
	case <-a.viewed:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the agent's view of node %s: %w", a.Node, ctx.Err())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.podCIDRs, nil
}

// lookupPod finds one pod: through the source's PodGetter (cache, then API
// server) when it has one, so a plugin request costs no full listing;
// otherwise in the source's objects.
func (a *Agent) lookupPod(ctx context.Context, namespace, name string) (*snapshot.Pod, error) {
	if g, ok := a.Source.(snapshot.PodGetter); ok {
		pod, err := g.GetPod(ctx, namespace, name)
		if err != nil {
			return nil, fmt.Errorf("pod %s/%s: %w", namespace, name, err)
		}
		return pod, nil
	}
	objs, err := a.Source.Objects()
	if err != nil {
		return nil, fmt.Errorf("read cluster state: %w", err)
	}
	if pod := findPod(objs, namespace, name); pod != nil {
		return pod, nil
	}
	return nil, fmt.Errorf("pod %s/%s is unknown to the agent", namespace, name)
}

func (a *Agent) setErr(err error) {
	a.Metrics.observeError()
	a.mu.Lock()
	a.st.LastError = err.Error()
	a.mu.Unlock()
}
