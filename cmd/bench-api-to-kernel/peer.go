package main

// The peer is kube-router's network policy controller (iptables and
// ipset), measured after weir-agent against the same API server and
// cluster, in a node namespace of its own, so that weir's lead is a ratio
// of one run. It is kube-router v2.1.0, built from bench/kube-router (its
// own module, outside weir's go.mod): a benchmark peer only, never shipped
// (v2.1.0 has reported security flaws).

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/weir-cni/weir/integration/kube"
	"github.com/weir-cni/weir/internal/testkit"
)

// figures are one agent's results: first sync, label-change latencies
// (sorted) and RSS.
type figures struct {
	sync time.Duration
	lat  []time.Duration
	rss  int64
}

// peerBinary parses -peer: kube-router=<binary>, the one peer there is.
func peerBinary(spec string) (string, error) {
	name, bin, ok := strings.Cut(spec, "=")
	if !ok || name != "kube-router" || bin == "" {
		return "", fmt.Errorf("-peer %q: want kube-router=<binary>", spec)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("-peer: %w", err)
	}
	for _, tool := range []string{"ipset", "iptables", "iptables-save", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("-peer: kube-router runs %s: %w (hack/deps.sh installs it)", tool, err)
		}
	}
	return bin, nil
}

// routerArgs run kube-router's firewall alone: no routing, no service
// proxy, no CNI config, no metrics or health port. The periodic resync is
// pushed past the run: it would only add full syncs the bench did not ask
// for.
func routerArgs(kubeconfig string) []string {
	return []string{"--run-firewall=true", "--run-router=false", "--run-service-proxy=false", "--enable-cni=false",
		"--kubeconfig=" + kubeconfig, "--hostname-override=" + nodeName, "--metrics-port=0", "--health-port=0",
		"--iptables-sync-period=1h", "--v=1"}
}

// comparePeer runs kube-router (bin) in a fresh node namespace against kc,
// times its first sync and the target's label changes as weir's were
// timed, and prints (with pr) its figures and their ratios to weir's.
func comparePeer(ctx context.Context, kc *kube.Cluster, pod target, bin string, changes int, weir figures, pr func(string, ...any)) error {
	set, err := egressSet(ctx, kc, pod)
	if err != nil {
		return err
	}
	node, err := testkit.NewNS("krkb")
	if err != nil {
		return err
	}
	defer node.Delete()
	kcfg, err := kc.KubeconfigFor(node.Path())
	if err != nil {
		return err
	}
	defer kc.StopRelay(node.Path())
	k, err := openIptables(node.Path())
	if err != nil {
		return err
	}
	defer k.close()
	r, err := startRouter(node, bin, kcfg)
	if err != nil {
		return err
	}
	err = r.measure(ctx, kc, k, pod, set, changes, weir, pr)
	r.stop(err)
	return err
}

// router is a running kube-router.
type router struct {
	cmd    *exec.Cmd
	log    string
	logf   *os.File
	start  time.Time
	exited chan struct{} // closed when it has exited, with waitErr
	// waitErr is cmd.Wait's error, once exited is closed.
	waitErr error
}

// startRouter starts bin in node, logging next to its kubeconfig.
func startRouter(node *testkit.NS, bin, kubeconfig string) (*router, error) {
	r := &router{log: filepath.Join(filepath.Dir(kubeconfig), "kube-router.log"), exited: make(chan struct{})}
	var err error
	if r.logf, err = os.Create(r.log); err != nil {
		return nil, err
	}
	r.cmd = exec.Command(bin, routerArgs(kubeconfig)...)
	r.cmd.Stdout, r.cmd.Stderr = r.logf, r.logf
	r.start = time.Now()
	if err := testkit.StartIn(node, r.cmd); err != nil {
		r.logf.Close()
		return nil, err
	}
	go func() { r.waitErr = r.cmd.Wait(); close(r.exited) }()
	return r, nil
}

// stop kills kube-router and, when it failed with err, prints its log's
// tail.
func (r *router) stop(err error) {
	_ = r.cmd.Process.Kill()
	<-r.exited
	_ = r.logf.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-router log tail:\n%s\n", kube.Tail(r.log, 15))
	}
}

// measure times kube-router's first sync, then the target's label changes
// twice: until the ipset follows, and until the iptables-restore of the
// sync carrying it lands; then its RSS. It prints them and the ratios.
func (r *router) measure(ctx context.Context, kc *kube.Cluster, k *iptables, pod target, set string, changes int, weir figures, pr func(string, ...any)) error {
	var kr figures
	chains, err := k.waitFirstSync(set, pod.ip, r, 5*time.Minute)
	if err != nil {
		return err
	}
	kr.sync = time.Since(r.start)
	pr("first sync (caches + ipsets + iptables, %d pod chains): %v", chains, kr.sync.Round(time.Millisecond))
	ends := &syncLog{path: r.log}
	if err := ends.wait(); err != nil { // the first sync's ipset cleanup, after its iptables-restore
		return err
	}
	inSet := func() (bool, error) { return k.inSet(set, pod.ip) }
	if kr.lat, err = toggleApp(ctx, kc, pod, changes, inSet, ends.wait); err != nil {
		return fmt.Errorf("kube-router, ipset: %w", err)
	}
	slices.Sort(kr.lat)
	printLatency(pr, "API write -> ipset, one pod label change", kr.lat, "")
	full, err := toggleApp(ctx, kc, pod, changes, k.syncedProbe(set, pod.ip), ends.wait)
	if err != nil {
		return fmt.Errorf("kube-router, iptables: %w", err)
	}
	slices.Sort(full)
	printLatency(pr, "API write -> iptables (its full sync landed), one pod label change", full, "")
	if kr.rss, err = rssOf(r.cmd.Process.Pid); err != nil {
		return err
	}
	pr("RSS: %.1f MiB (its ipset and iptables children not counted)", float64(kr.rss)/(1<<20))
	ratio := func(peer, own time.Duration) string { return fmt.Sprintf("%.1fx", float64(peer)/float64(own)) }
	pr("kube-router / weir: first sync %s, label change p50 %s (ipset) %s (iptables), p99 %s (ipset) %s (iptables), RSS %.1fx",
		ratio(kr.sync, weir.sync), ratio(pct(kr.lat, 50), pct(weir.lat, 50)), ratio(pct(full, 50), pct(weir.lat, 50)),
		ratio(pct(kr.lat, 99), pct(weir.lat, 99)), ratio(pct(full, 99), pct(weir.lat, 99)), float64(kr.rss)/float64(weir.rss))
	return nil
}

// toggleApp flips the target pod's app label between an unselected value
// and app0, n times (rounded up to even, so that it ends selected), and
// times each API write until present (the pod's membership in the node's
// kernel state for the app0 policies) follows, for up to a minute:
// kube-router takes ~15s at 10,000 pods. settle, if not nil, runs untimed
// after each change: it waits for the rest of the sync that made present
// follow, so that the next write does not queue behind it.
func toggleApp(ctx context.Context, kc *kube.Cluster, pod target, n int, present func() (bool, error), settle func() error) ([]time.Duration, error) {
	var out []time.Duration
	err := toggles(ctx, kc, pod, n, present, func(update func(context.Context) error, want bool) error {
		t0 := time.Now() // the write itself
		if err := update(ctx); err != nil {
			return err
		}
		// Every 5 ms: kube-router takes seconds, and a probe of its
		// chains is a dump of them all.
		if err := await(ctx, present, want, t0, 5*time.Millisecond, time.Minute); err != nil {
			return err
		}
		out = append(out, time.Since(t0))
		if settle != nil {
			return settle()
		}
		return nil
	})
	return out, err
}

// egressSet names the ipset in which kube-router keeps the pods an app0
// policy of the target's namespace isolates for egress: the policy's
// podSelector matches the target labelled app=app0 and not relabelled.
func egressSet(ctx context.Context, kc *kube.Cluster, pod target) (string, error) {
	nps, err := kc.Client.NetworkingV1().NetworkPolicies(pod.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	off := labels.Set{"app": "unselected"}
	for k, v := range pod.labels {
		if k != "app" {
			off[k] = v
		}
	}
	for _, np := range nps.Items {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			continue
		}
		if sel.Matches(labels.Set(pod.labels)) && !sel.Matches(off) {
			return sourceSetName(np.Namespace, np.Name), nil
		}
	}
	return "", fmt.Errorf("no egress policy of namespace %s selects only app0 pods", pod.namespace)
}

// sourceSetName is kube-router v2.1.0's policySourcePodIPSetName for IPv4
// (pkg/controllers/netpol/policy.go): the set of a policy's target pods,
// matched as packet sources.
func sourceSetName(namespace, policy string) string {
	h := sha256.Sum256([]byte(namespace + policy + "IPv4"))
	return "KUBE-SRC-" + base32.StdEncoding.EncodeToString(h[:])[:16]
}

// iptables reads kube-router's kernel state in the node's namespace, over
// lasting netlink sockets: ipset membership, and the names of its pod
// firewall chains (iptables-nft chains of the ip filter table), which
// every full sync renews in the one iptables-restore that ends it.
type iptables struct {
	ns  netns.NsHandle
	nl  *netlink.Handle
	nft *nftables.Conn
}

func openIptables(nodePath string) (*iptables, error) {
	h, err := netns.GetFromPath(nodePath)
	if err != nil {
		return nil, err
	}
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_NETFILTER)
	if err != nil {
		h.Close()
		return nil, err
	}
	nft, err := nftables.New(nftables.WithNetNSFd(int(h)), nftables.AsLasting())
	if err != nil {
		nl.Close()
		h.Close()
		return nil, err
	}
	return &iptables{ns: h, nl: nl, nft: nft}, nil
}

func (k *iptables) close() {
	_ = k.nft.CloseLasting()
	k.nl.Close()
	_ = k.ns.Close()
}

// inSet reports whether ip is in the ipset set.
func (k *iptables) inSet(set string, ip netip.Addr) (bool, error) {
	in, err := k.nl.IpsetTest(set, &netlink.IPSetEntry{IP: ip.AsSlice()})
	if err != nil {
		return false, fmt.Errorf("ipset test %s %s: %w", set, ip, err)
	}
	return in, nil
}

// podChains is the sorted names of kube-router's pod firewall chains.
func (k *iptables) podChains() ([]string, error) {
	chains, err := k.nft.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range chains {
		if c.Table.Name == "filter" && strings.HasPrefix(c.Name, "KUBE-POD-FW-") {
			out = append(out, c.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// waitFirstSync waits until kube-router's first full sync is in the
// kernel (pod chains exist, ip is in set) and returns its pod chain count.
func (k *iptables) waitFirstSync(set string, ip netip.Addr, r *router, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-r.exited:
			return 0, fmt.Errorf("kube-router exited before its first sync: %v", r.waitErr)
		default:
		}
		chains, err := k.podChains()
		if err != nil {
			return 0, err
		}
		if len(chains) > 0 {
			if in, err := k.inSet(set, ip); err == nil && in {
				return len(chains), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("kube-router: no first sync in the kernel after %v (%d pod chains)", timeout, len(chains))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncedProbe reports ip's membership in set as of the last full sync
// whose iptables-restore the kernel holds: kube-router restores its ipsets
// first, then iptables, renaming every pod chain, so the membership read
// when the chain names change is that sync's.
func (k *iptables) syncedProbe(set string, ip netip.Addr) func() (bool, error) {
	var last []string
	var in bool
	return func() (bool, error) {
		chains, err := k.podChains()
		if err != nil {
			return false, err
		}
		if slices.Equal(chains, last) {
			return in, nil
		}
		now, err := k.inSet(set, ip)
		if err != nil {
			return false, err
		}
		last, in = chains, now
		return in, nil
	}
}

// syncLog follows kube-router's log for the ends of its full syncs. The
// bench reads them only to settle between changes (a sync goes on after
// its iptables-restore, cleaning up ipsets: a write made then would queue
// behind it), never to time anything.
type syncLog struct {
	path    string
	off     int64
	partial []byte
	starts  int // full syncs started, as of off
	ends    int // full syncs ended, as of off
	waited  int // ends wait has returned for
}

// What kube-router v2.1.0 logs (at -v 1) when a full sync starts and ends.
const (
	syncStart = "Starting sync of iptables"
	syncEnd   = "sync iptables took"
)

// wait waits for the next full sync to end: one more than the last wait
// saw.
func (l *syncLog) wait() error {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if err := l.read(); err != nil {
			return err
		}
		if l.ends > l.waited {
			l.waited++
			return nil
		}
	}
	return fmt.Errorf("kube-router: no full sync ended within a minute (%d so far)", l.ends)
}

// settle waits, for up to timeout, until every full sync that started has
// ended and none started nor ended for quiet: kube-router queues one
// more sync for the events its first one already covered.
func (l *syncLog) settle(quiet, timeout time.Duration) error {
	last := time.Now()
	for deadline := last.Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		starts, ends := l.starts, l.ends
		if err := l.read(); err != nil {
			return err
		}
		if l.starts != starts || l.ends != ends {
			last = time.Now()
		}
		if l.starts == l.ends && time.Since(last) >= quiet {
			l.waited = l.ends
			return nil
		}
	}
	return fmt.Errorf("kube-router: its full syncs did not settle within %v (%d started, %d ended)", timeout, l.starts, l.ends)
}

// read counts the sync starts and ends in the lines appended since the
// last read.
func (l *syncLog) read() error {
	f, err := os.Open(l.path)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	n, err := f.ReadAt(b, l.off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	l.off += int64(n)
	lines := strings.Split(string(append(l.partial, b[:n]...)), "\n")
	l.partial = []byte(lines[len(lines)-1])
	for _, line := range lines[:len(lines)-1] {
		switch {
		case strings.Contains(line, syncStart):
			l.starts++
		case strings.Contains(line, syncEnd):
			l.ends++
		}
	}
	return nil
}
