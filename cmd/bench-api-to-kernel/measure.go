package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/integration/kube"
	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/internal/testkit"
)

// metricsAddr is where the agent serves /metrics, in the node namespace.
const metricsAddr = "127.0.0.1:9765"

// sample is one timed change: from the API write until the bench saw its
// effect in the kernel, and the phases of the agent's sync that applied
// it (zero, phased false, when the agent did not report them).
type sample struct {
	total time.Duration
	// watch is from the write to the agent's informer event (the API
	// write's own round trip included); queue from that event to the
	// sync's start; read, compile and apply the sync's phases, apply
	// ending when the agent had the kernel's acknowledgement or the bench
	// saw the change, whichever came first; poll from then to the bench
	// reading the commit's effect (see phases).
	watch, queue, read, compile, apply, poll time.Duration
	// phased tells that the agent reported the phases (see phases).
	phased bool
}

// measure runs the agent bin on cl's node, prints its figures, each line
// prefixed with label, and returns those a peer is compared to.
func measure(ctx context.Context, cl *cluster, label, bin, tmp string, o options) (_ figures, err error) {
	kcfg, err := cl.kc.KubeconfigFor(cl.node.Path())
	if err != nil {
		return figures{}, err
	}
	base := filepath.Join(tmp, cl.size.name+"-"+strings.ReplaceAll(label, " ", "-"))
	sock, logPath := base+".sock", base+".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return figures{}, err
	}
	defer logf.Close()
	agent := agentCmd(bin, kcfg, sock, logf)
	profiles := ""
	if label == "agent" && o.heapProfiles != "" {
		profiles = o.heapProfiles
		agent.Args = append(agent.Args, "--pprof")
	}
	start := time.Now()
	if err := testkit.StartIn(cl.node, agent); err != nil {
		return figures{}, err
	}
	defer func() { _ = agent.Process.Kill(); _ = agent.Wait() }()
	defer func() {
		if err != nil || o.verbose {
			fmt.Fprintf(os.Stderr, "%s log tail:\n%s\n", label, kube.Tail(logPath, 15))
		}
	}()
	if _, err := testkit.WaitSynced(ctx, sock, 5*time.Minute); err != nil {
		return figures{}, err
	}
	f := figures{sync: time.Since(start)}
	pr := printer(cl.size.name, label)
	pr("agent first sync (caches + compile + apply): %v", f.sync.Round(time.Millisecond))
	if _, err := printMemory(cl, agent.Process.Pid, "after first sync", pr); err != nil {
		return figures{}, err
	}
	if err := saveHeapProfile(cl, profiles, "first-sync", pr); err != nil {
		return figures{}, err
	}
	k, err := openKernel(cl.node.Path())
	if err != nil {
		return figures{}, err
	}
	defer k.close()
	m := &meter{kc: cl.kc, k: k, sock: sock}
	lat, err := m.labelChanges(ctx, cl.target, o.changes)
	if err != nil {
		return figures{}, err
	}
	f.lat = printSamples(pr, "one pod label change", lat, p99Target(cl.size))
	if lat, err = m.policyChanges(ctx, cl.target, o.otherChanges); err != nil {
		return figures{}, err
	}
	printSamples(pr, "one policy added or deleted", lat, "")
	if lat, err = m.podChanges(ctx, cl.target, o.otherChanges); err != nil {
		return figures{}, err
	}
	printSamples(pr, "one pod added (created, then its IP set) or deleted", lat, "")
	if f.rss, err = printMemory(cl, agent.Process.Pid, "after the changes", pr); err != nil {
		return f, err
	}
	return f, saveHeapProfile(cl, profiles, "changes", pr)
}

// saveHeapProfile saves the agent's heap profile (after a collection) in
// dir as <size>-<when>.pb.gz; nothing when dir is empty.
func saveHeapProfile(cl *cluster, dir, when string, pr func(string, ...any)) error {
	if dir == "" {
		return nil
	}
	resp, err := agentGet(cl.node, "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent heap profile: %s", resp.Status)
	}
	path := filepath.Join(dir, cl.size.name+"-"+when+".pb.gz")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("agent heap profile: %w", err)
	}
	pr("heap profile %s: %s", when, path)
	return f.Close()
}

// agentCmd is weir-agent bin for the node, against the API server of
// kubeconfig, answering on sock, logging to log.
func agentCmd(bin, kubeconfig, sock string, log *os.File) *exec.Cmd {
	agent := exec.Command(bin, "--node-name", nodeName, "--kubeconfig", kubeconfig, "--socket", sock,
		"--cluster-cidr", synth.ClusterCIDR, "--node-routes=false", "--http-addr", metricsAddr)
	agent.Stdout, agent.Stderr = log, log
	return agent
}

// printer prints lines prefixed with the size and label of what they
// measure.
func printer(size, label string) func(string, ...any) {
	return func(format string, a ...any) { fmt.Printf("["+size+" "+label+"] "+format+"\n", a...) }
}

// printMemory prints the agent's RSS, against the size's target, and the
// heap its last garbage collection kept and the heap in use, from its
// metrics; it returns the RSS.
func printMemory(cl *cluster, pid int, when string, pr func(string, ...any)) (int64, error) {
	st, err := procStatus(pid, "VmRSS", "RssAnon", "RssFile", "RssShmem")
	if err != nil {
		return 0, err
	}
	rss := st["VmRSS"]
	m, err := agentMetrics(cl.node)
	if err != nil {
		return 0, err
	}
	live := "n/a"
	if v, ok := m["go_gc_heap_live_bytes"]; ok {
		live = fmt.Sprintf("%.1f MiB", v/(1<<20))
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	pr("agent memory %s: RSS %.1f MiB (anon %.1f, file %.1f, shmem %.1f)   target < %g MiB;  heap live %s, in use %.1f MiB, GC goal %.1f MiB",
		when, mib(rss), mib(st["RssAnon"]), mib(st["RssFile"]), mib(st["RssShmem"]), cl.size.rssTarget, live,
		m["go_memstats_heap_inuse_bytes"]/(1<<20), m["go_memstats_next_gc_bytes"]/(1<<20))
	return rss, nil
}

// agentMetrics reads the agent's unlabelled metrics, over a connection
// made in the node's namespace.
func agentMetrics(node ns.NetNS) (map[string]float64, error) {
	resp, err := agentGet(node, "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || strings.HasPrefix(f[0], "#") || strings.Contains(f[0], "{") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, sc.Err()
}

// agentGet gets path from the agent's HTTP server, over a connection made
// in the node's namespace.
func agentGet(node ns.NetNS, path string) (*http.Response, error) {
	dial := func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = node.Do(func(ns.NetNS) error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: dial}}
	resp, err := client.Get("http://" + metricsAddr + path)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", path, err)
	}
	return resp, nil
}

// printSamples prints the latency percentiles of samples and the median of
// each phase.
// It returns the sorted totals.
func printSamples(pr func(string, ...any), what string, s []sample, target string) []time.Duration {
	totals := phase(s, func(s sample) time.Duration { return s.total })
	printLatency(pr, "API write -> kernel, "+what, totals, target)
	// Phases only of the samples the agent reported its sync times for.
	s = slices.DeleteFunc(slices.Clone(s), func(s sample) bool { return !s.phased })
	if len(s) == 0 {
		pr("  p50 by phase: n/a (the agent does not report its sync times)")
		return totals
	}
	if over := slices.DeleteFunc(slices.Clone(s), func(s sample) bool { return !s.overrun() }); len(over) > 0 {
		pr("  %d of %d samples have phases adding up to more than their total (the sync the agent reported is not the one that made the change):",
			len(over), len(s))
		for _, x := range over {
			pr("    %v: %s", x.total.Round(10*time.Microsecond), x.phaseList())
		}
	}
	p50 := func(f func(sample) time.Duration) time.Duration { return pct(phase(s, f), 50) }
	pr("  p50 by phase (%d samples): write+watch %v, queue %v, read %v, compile %v, apply %v, bench read %v", len(s),
		p50(func(s sample) time.Duration { return s.watch }), p50(func(s sample) time.Duration { return s.queue }),
		p50(func(s sample) time.Duration { return s.read }), p50(func(s sample) time.Duration { return s.compile }),
		p50(func(s sample) time.Duration { return s.apply }), p50(func(s sample) time.Duration { return s.poll }))
	// The tail is a few samples: name where the slowest ones spent theirs.
	slices.SortFunc(s, func(a, b sample) int { return cmp.Compare(b.total, a.total) })
	for i, x := range s[:min(3, len(s))] {
		pr("  slowest #%d %v: %s", i+1, x.total.Round(10*time.Microsecond), x.phaseList())
	}
	return totals
}

// phaseList spells s's phases.
func (s sample) phaseList() string {
	return fmt.Sprintf("write+watch %v, queue %v, read %v, compile %v, apply %v, bench read %v",
		s.watch, s.queue, s.read, s.compile, s.apply, s.poll)
}

// printLatency prints the percentiles of sorted latencies.
func printLatency(pr func(string, ...any), what string, lat []time.Duration, target string) {
	pr("%s (%d samples): p50 %v  p99 %v  max %v%s", what, len(lat),
		pct(lat, 50), pct(lat, 99), lat[len(lat)-1].Round(10*time.Microsecond), target)
}

// phase is one field of every sample, sorted.
func phase(s []sample, f func(sample) time.Duration) []time.Duration {
	out := make([]time.Duration, len(s))
	for i := range s {
		out[i] = f(s[i])
	}
	slices.Sort(out)
	return out
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)].Round(10 * time.Microsecond)
}

// kernel reads the egress-isolation map of the node's table.
type kernel struct {
	fd   int
	conn *nftables.Conn
	set  *nftables.Set // egress-pods4, looked up once: its elements are read by name
	gens *generations  // when to read it
}

// openKernel opens one lasting netlink socket in the node's namespace.
// With a socket opened per poll (the library's default), the first poll
// after each "pod leaves the policy" commit took 7-18 ms, whereas the
// kernel already held the change; that wait was counted as agent latency.
func openKernel(nodePath string) (*kernel, error) {
	fd, err := unix.Open(nodePath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	conn, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	k := &kernel{fd: fd, conn: conn}
	if k.gens, err = listenGenerations(fd); err != nil {
		k.close()
		return nil, err
	}
	table := &nftables.Table{Name: "weir", Family: nftables.TableFamilyINet}
	if k.set, err = conn.GetSetByName(table, "egress-pods4"); err != nil {
		k.close()
		return nil, err
	}
	return k, nil
}

func (k *kernel) close() {
	if k.gens != nil {
		k.gens.close()
	}
	_ = k.conn.CloseLasting()
	_ = unix.Close(k.fd)
}

// isolated reports whether ip is in the egress-isolation map.
func (k *kernel) isolated(ip netip.Addr) (bool, error) {
	els, err := k.conn.GetSetElements(k.set)
	if err != nil {
		return false, err
	}
	for _, e := range els {
		if a, ok := netip.AddrFromSlice(e.Key); ok && a == ip {
			return true, nil
		}
	}
	return false, nil
}

// meter times API writes until the kernel holds their effect.
type meter struct {
	kc   *kube.Cluster
	k    *kernel
	sock string
}

// timed runs write and waits until ip is (want) or is not in the
// egress-isolation map, reading it after each kernel commit, then asks the
// agent for the phases of the sync that put it there.
func (m *meter) timed(ctx context.Context, ip netip.Addr, want bool, write func(context.Context) error) (sample, error) {
	latest(m.k.gens.commits, time.Time{}) // commits before the write
	t0 := time.Now()                      // the write itself
	if err := write(ctx); err != nil {
		return sample{}, err
	}
	isolated := func() (bool, error) { return m.k.isolated(ip) }
	seen, err := m.k.gens.await(ctx, isolated, want, t0, 30*time.Second, 20*time.Millisecond)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w", ip, err)
	}
	// The agent publishes its status after the reconcilers, just after
	// the kernel has the ruleset.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		st, err := testkit.Status(ctx, m.sock)
		if err != nil {
			return sample{}, err
		}
		if ts := st.LastSyncTimes; ts.Applied.After(t0) && !ts.FirstEvent.IsZero() {
			return phases(t0, seen, ts), nil
		}
	}
	return sample{total: seen.Sub(t0)}, nil
}

// phases is the sample of a change written at t0 and seen in the kernel
// at seen, split by ts, the times of the sync the agent reports for it.
// The agent stamps Applied when its apply returns, which may be after the
// kernel shows the change (the commit's acknowledgement is on its way):
// the apply phase ends at seen when the bench saw the change first, and
// poll is then zero. Each phase starts where the
// one before ends, so they add up to total unless ts is not the sync that
// made the change (see sample.overrun).
//
// Every time is read on the wall clock: the agent's come without a
// monotonic reading, and Go reads a time's two clocks one after the other,
// so a total on the monotonic clock differed from the sum of the phases by
// a few nanoseconds either way, and half the samples were overruns.
func phases(t0, seen time.Time, ts agentapi.SyncTimes) sample {
	t0, seen = t0.Round(0), seen.Round(0)
	applied := ts.Applied
	if applied.After(seen) {
		applied = seen
	}
	return sample{total: seen.Sub(t0),
		watch: ts.FirstEvent.Sub(t0), queue: ts.Start.Sub(ts.FirstEvent),
		read: ts.Read.Sub(ts.Start), compile: ts.Compiled.Sub(ts.Read),
		apply: max(applied.Sub(ts.Compiled), 0), poll: seen.Sub(applied), phased: true}
}

// overrun reports whether s's phases add up to more than its total: the
// sync they are of compiled after the bench saw the change in the kernel,
// so another sync made it (or the clocks disagree), and the phases do not
// explain the total.
func (s sample) overrun() bool {
	return s.watch+s.queue+s.read+s.compile+s.apply+s.poll > s.total
}

// labelChanges flips the target pod's app label between an unselected
// value and app0, n times (rounded up to even, so it ends selected), and
// times each until the pod's address leaves or enters the
// egress-isolation map.
func (m *meter) labelChanges(ctx context.Context, pod target, n int) ([]sample, error) {
	var out []sample
	err := toggles(ctx, m.kc, pod, n, func() (bool, error) { return m.k.isolated(pod.ip) },
		func(update func(context.Context) error, want bool) error {
			s, err := m.timed(ctx, pod.ip, want, update)
			out = append(out, s)
			return err
		})
	return out, err
}

// toggles flips the target pod's app label between an unselected value and
// app0, n times rounded up to even (so that it ends selected), once present
// says it is isolated: step makes each write (update) and waits until the
// kernel holds its effect (want: isolated again).
func toggles(ctx context.Context, kc *kube.Cluster, pod target, n int, present func() (bool, error),
	step func(update func(context.Context) error, want bool) error) error {
	if was, err := present(); err != nil || !was {
		return fmt.Errorf("pod %s/%s (%s) is not isolated at start (%v)", pod.namespace, pod.name, pod.ip, err)
	}
	for i := range n + n%2 {
		app := "unselected"
		if i%2 == 1 {
			app = "app0"
		}
		update, err := relabel(ctx, kc, pod, app)
		if err != nil {
			return err
		}
		if err := step(update, app == "app0"); err != nil {
			return fmt.Errorf("label change %d: %w", i, err)
		}
	}
	return nil
}

// await polls present every interval, from t0 on, until it reports want,
// for up to timeout. The interval is the bench's resolution and its load on
// the CPUs the measured process shares.
func await(ctx context.Context, present func() (bool, error), want bool, t0 time.Time, interval, timeout time.Duration) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		got, err := present()
		if err != nil {
			return err
		}
		if got == want {
			return nil
		}
		if time.Since(t0) > timeout {
			return fmt.Errorf("not in the kernel (present %v) after %v", want, timeout)
		}
		time.Sleep(interval)
	}
}

// relabel reads the target and returns the write that sets its app label
// (the Update, which alone is timed).
func relabel(ctx context.Context, kc *kube.Cluster, pod target, app string) (func(context.Context) error, error) {
	p, err := kc.Client.CoreV1().Pods(pod.namespace).Get(ctx, pod.name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	p.Labels = maps.Clone(pod.labels)
	p.Labels["app"] = app
	return func(ctx context.Context) error {
		_, err := kc.Client.CoreV1().Pods(pod.namespace).Update(ctx, p, metav1.UpdateOptions{})
		return err
	}, nil
}

// setApp sets the target's app label, untimed, and waits until the
// kernel has it.
func (m *meter) setApp(ctx context.Context, pod target, app string) error {
	update, err := relabel(ctx, m.kc, pod, app)
	if err != nil {
		return err
	}
	_, err = m.timed(ctx, pod.ip, app == "app0", update)
	return err
}

// policyChanges relabels the target out of the app0 policies, then adds
// and deletes a policy isolating it (extraPolicy), n times each, and
// labels it back.
func (m *meter) policyChanges(ctx context.Context, pod target, n int) ([]sample, error) {
	if err := m.setApp(ctx, pod, "unselected"); err != nil {
		return nil, err
	}
	np := extraPolicy(pod)
	var out []sample
	for i := range n {
		add, err := m.timed(ctx, pod.ip, true, func(ctx context.Context) error {
			_, err := kube.CreatePolicy(ctx, m.kc.Client, np)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("policy add %d: %w", i, err)
		}
		del, err := m.timed(ctx, pod.ip, false, func(ctx context.Context) error {
			return kube.DeletePolicy(ctx, m.kc.Client, np.Namespace, np.Name)
		})
		if err != nil {
			return nil, fmt.Errorf("policy delete %d: %w", i, err)
		}
		out = append(out, add, del)
	}
	return out, m.setApp(ctx, pod, "app0")
}

// podChanges creates a local app0 backend pod next to the target (with an
// address, as after CNI ADD: a create and a status write) and deletes it,
// n times each, timing each until its address enters or leaves the
// egress-isolation map.
func (m *meter) podChanges(ctx context.Context, pod target, n int) ([]sample, error) {
	var out []sample
	for i := range n {
		ip := netip.AddrFrom4([4]byte{10, 0, 250, byte(i)})
		name := fmt.Sprint("bench-add-", i)
		add, err := m.timed(ctx, ip, true, func(ctx context.Context) error {
			_, err := kube.CreatePod(ctx, m.kc.Client, kube.Pod{Namespace: pod.namespace, Name: name, Node: nodeName,
				Labels: pod.labels, IPs: []string{ip.String()}})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("pod add %d: %w", i, err)
		}
		del, err := m.timed(ctx, ip, false, func(ctx context.Context) error {
			return kube.DeletePod(ctx, m.kc.Client, pod.namespace, name)
		})
		if err != nil {
			return nil, fmt.Errorf("pod delete %d: %w", i, err)
		}
		out = append(out, add, del)
	}
	return out, nil
}

// p99Target is the label-change latency target of sz, if it has one.
func p99Target(sz size) string {
	if sz.p99Target == 0 {
		return ""
	}
	return fmt.Sprintf("   target p99 < %gms", sz.p99Target)
}
