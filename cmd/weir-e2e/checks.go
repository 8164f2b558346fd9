package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weir-cni/weir/integration/cluster"
	"github.com/weir-cni/weir/internal/fixtures"
)

// Namespaces of weir's own checks: a holds an isolated server, b its
// clients (no policy), c pods whose egress is denied from their first
// packet on.
const (
	nsA = "weir-check-a"
	nsB = "weir-check-b"
	nsC = "weir-check-c"
)

type checker struct {
	c    *cluster.Cluster
	o    options
	logf func(string, ...any)
	// set up by setup
	srvIP, openIP, svcIP string
	extPort              int
}

// weirChecks runs weir's own checks in the cluster: each one a case of
// the result.
func weirChecks(ctx context.Context, c *cluster.Cluster, o options, runDir string, logf func(string, ...any)) cluster.Result {
	k := &checker{c: c, o: o, logf: logf}
	return runChecks(ctx, "weir", runDir, logf, k.setup, k.cleanup, []check{
		{"kubelet readiness and liveness probes reach a pod under default-deny", k.probesUnderDefaultDeny},
		{"a policy applies to a Service's backend after kube-proxy's DNAT", k.policyAfterDNAT},
		{"a new pod's first packets are already filtered (CNI ADD waits for the agent)", k.firstPacketFiltered},
		{"kubectl exec and logs work", k.execAndLogs},
		{"pod to outside the cluster is masqueraded to the node's address", k.masquerade},
		{"weirctl status and explain inside the agent's pod", k.weirctl},
		{"the agent's /metrics is scraped", k.metrics},
		{"a rolling update of the weir DaemonSet lets nothing through against policy", k.rollingUpdate},
	})
}

// check is one of weir's own checks: a case of its suite.
type check struct {
	name string
	f    func(context.Context) error
}

// runChecks sets up, runs every check in order (one failing does not stop
// the next), writes runDir/<suite>/checks.tsv and cleans up.
func runChecks(ctx context.Context, suite, runDir string, logf func(string, ...any),
	setup, cleanup func(context.Context) error, checks []check) cluster.Result {
	start := time.Now()
	res := cluster.Result{Suite: cluster.Suite{Name: suite}}
	if err := setup(ctx); err != nil {
		res.Err = fmt.Errorf("set up: %w", err)
		res.Duration = time.Since(start)
		return res
	}
	var report strings.Builder
	for _, ch := range checks {
		t0 := time.Now()
		logf("check: %s", ch.name)
		err := ch.f(ctx)
		cs := cluster.Case{Name: ch.name, State: "passed", Duration: time.Since(t0)}
		if err != nil {
			cs.State, cs.Message = "failed", err.Error()
			logf("  FAILED: %v", err)
		}
		fmt.Fprintf(&report, "%s\t%s\t%s\n", cs.State, ch.name, cs.Message)
		res.Cases = append(res.Cases, cs)
	}
	_ = os.MkdirAll(filepath.Join(runDir, suite), 0o755)
	_ = os.WriteFile(filepath.Join(runDir, suite, "checks.tsv"), []byte(report.String()), 0o644)
	_ = cleanup(context.Background())
	res.Duration = time.Since(start)
	return res
}

func (k *checker) setup(ctx context.Context) error {
	cs := k.c.Client.CoreV1()
	for _, ns := range []string{nsA, nsB, nsC} {
		_, err := cs.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
	}
	// a: default-deny both ways, and ingress to srv only from b's
	// role=client pods on 8080.
	np := k.c.Client.NetworkingV1().NetworkPolicies(nsA)
	if _, err := np.Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "default-deny"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{
			networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	port := intstr.FromInt32(8080)
	if _, err := np.Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "srv-from-clients"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "srv"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": nsB}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// c: no egress at all.
	if _, err := k.c.Client.NetworkingV1().NetworkPolicies(nsC).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-egress"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	nodes := k.c.Nodes
	pods := []*corev1.Pod{
		serverPod(nsA, "srv", map[string]string{"app": "srv"}, nodes[0].Name),
		serverPod(nsB, "open", map[string]string{"app": "open"}, nodes[len(nodes)-1].Name),
		idlePod(nsB, "client", map[string]string{"role": "client"}, nodes[len(nodes)-1].Name),
		idlePod(nsB, "other", map[string]string{"role": "other"}, nodes[len(nodes)-1].Name),
	}
	for _, p := range pods {
		if _, err := cs.Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	svc, err := cs.Services(nsA).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "srv"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "srv"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	k.svcIP = svc.Spec.ClusterIP
	for _, p := range pods {
		ip, err := k.waitRunning(ctx, p.Namespace, p.Name, 2*time.Minute)
		if err != nil {
			return err
		}
		switch p.Name {
		case "srv":
			k.srvIP = ip
		case "open":
			k.openIP = ip
		}
	}
	return nil
}

func (k *checker) cleanup(ctx context.Context) error {
	for _, ns := range []string{nsA, nsB, nsC} {
		_ = k.c.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	}
	return nil
}

const agnhost = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"

// serverPod is an agnhost pod on node serving HTTP on 8080 (the named
// port http) and UDP on 8081, ready once it accepts TCP on 8080.
func serverPod(ns, name string, labels map[string]string, node string) *corev1.Pod {
	probe := &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 2,
	}
	return agnhostPod(ns, name, labels, node, corev1.Container{Name: "srv",
		Args:           []string{"netexec", "--http-port=8080", "--udp-port=8081"},
		Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		ReadinessProbe: probe, LivenessProbe: probe,
	})
}

// idlePod is an agnhost pod on node that only sleeps.
func idlePod(ns, name string, labels map[string]string, node string) *corev1.Pod {
	return agnhostPod(ns, name, labels, node, corev1.Container{Name: "c", Args: []string{"pause"}})
}

// agnhostPod is a pod on node running c in the agnhost image (loaded on
// the nodes, never pulled).
func agnhostPod(ns, name string, labels map[string]string, node string, c corev1.Container) *corev1.Pod {
	c.Image, c.ImagePullPolicy = agnhost, corev1.PullNever
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: fixtures.Ptr(int64(1)),
			Containers:                    []corev1.Container{c},
		},
	}
}

// waitRunning waits for the pod to run and be ready; it returns its IP.
func (k *checker) waitRunning(ctx context.Context, ns, name string, timeout time.Duration) (string, error) {
	var ip string
	err := pollFor(ctx, timeout, func() error {
		p, err := k.c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("pod %s/%s is %s", ns, name, p.Status.Phase)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
				return fmt.Errorf("pod %s/%s not ready: %s", ns, name, c.Message)
			}
		}
		ip = p.Status.PodIP
		return nil
	})
	return ip, err
}

func pollFor(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (k *checker) exec(ctx context.Context, ns, pod string, cmd ...string) (string, error) {
	return k.c.Kubectl(ctx, append([]string{"exec", "-n", ns, pod, "--"}, cmd...)...)
}

// connect reports whether a TCP connection from pod to addr succeeds.
func (k *checker) connect(ctx context.Context, ns, pod, addr string) bool {
	_, err := k.exec(ctx, ns, pod, "/agnhost", "connect", addr, "--timeout=3s")
	return err == nil
}

func (k *checker) probesUnderDefaultDeny(ctx context.Context) error {
	// srv is in a namespace denying all ingress and egress but for b's
	// clients; its readiness probe made it Ready in setup. Liveness:
	// no restarts after several probe periods.
	time.Sleep(6 * time.Second)
	p, err := k.c.Client.CoreV1().Pods(nsA).Get(ctx, "srv", metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.RestartCount > 0 {
			return fmt.Errorf("srv restarted %d times: liveness probes fail", s.RestartCount)
		}
		if !s.Ready {
			return fmt.Errorf("srv not ready: readiness probes fail")
		}
	}
	return nil
}

func (k *checker) policyAfterDNAT(ctx context.Context) error {
	svc := k.svcIP + ":80"
	if !k.connect(ctx, nsB, "client", svc) {
		return fmt.Errorf("role=client could not reach srv through its Service %s", svc)
	}
	if k.connect(ctx, nsB, "other", svc) {
		return fmt.Errorf("role=other reached srv through its Service %s against policy", svc)
	}
	if k.connect(ctx, nsB, "other", k.srvIP+":8080") {
		return fmt.Errorf("role=other reached srv's pod IP against policy")
	}
	return nil
}

// heldConnection is a bash script that opens one TCP connection to an
// agnhost netexec at addr and sends an HTTP/1.1 request on it every half
// second until the file stop exists (at most 10 minutes), checking each
// answer. It prints KEPT and the number of answers, or BROKEN and where.
func heldConnection(addr, stop string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`trap "" PIPE
exec 3<>/dev/tcp/%s/%s || { echo "BROKEN: no connection"; exit 0; }
i=0
while [ ! -e %s ] && [ $i -lt 1200 ]; do
	i=$((i+1))
	printf 'GET /echo?msg=m%%d%%%%0A HTTP/1.1\r\nHost: srv\r\n\r\n' $i >&3 2>/dev/null || { echo "BROKEN: write $i failed"; exit 0; }
	got=
	while IFS= read -r -t 3 line <&3; do
		if [ "${line%%$'\r'}" = "m$i" ]; then got=1; break; fi
	done
	[ -n "$got" ] || { echo "BROKEN: no answer to request $i"; exit 0; }
	sleep 0.5
done
echo "KEPT: $i requests answered on one connection"`, host, port, stop)
}

// probeLoop is a shell loop of n connection attempts to addr, printing
// OK or NO for each, then DONE.
func probeLoop(addr string, n int, timeout string) string {
	return fmt.Sprintf(`i=0; while [ $i -lt %d ]; do if /agnhost connect %s --timeout=%s >/dev/null 2>&1; then echo OK; else echo NO; fi; i=$((i+1)); done; echo DONE`,
		n, addr, timeout)
}

// firstPacketFiltered starts a pod whose egress is denied and whose first
// command probes an open server, and a control pod without policy doing
// the same: the first must never connect, the second must.
func (k *checker) firstPacketFiltered(ctx context.Context) error {
	cs := k.c.Client.CoreV1()
	target := k.openIP + ":8080"
	script := probeLoop(target, 60, "200ms") + "; sleep 3600"
	mk := func(ns string) *corev1.Pod {
		p := idlePod(ns, "early", nil, k.c.Nodes[0].Name)
		p.Spec.Containers[0].Command = []string{"/bin/sh", "-c", script}
		p.Spec.Containers[0].Args = nil
		return p
	}
	for _, ns := range []string{nsC, nsB} {
		if _, err := cs.Pods(ns).Create(ctx, mk(ns), metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	count := func(ns string) (ok, no int, err error) {
		err = pollFor(ctx, 2*time.Minute, func() error {
			out, err := k.c.Kubectl(ctx, "logs", "-n", ns, "early")
			if err != nil {
				return err
			}
			if !strings.Contains(out, "DONE") {
				return fmt.Errorf("%s/early not done yet", ns)
			}
			ok, no = strings.Count(out, "OK"), strings.Count(out, "NO")
			return nil
		})
		return ok, no, err
	}
	okC, noC, err := count(nsC)
	if err != nil {
		return err
	}
	okB, _, err := count(nsB)
	if err != nil {
		return err
	}
	k.logf("  egress-denied pod: %d connected, %d refused; control pod: %d connected", okC, noC, okB)
	if okC > 0 {
		return fmt.Errorf("%d of %d connections from an egress-denied pod got through", okC, okC+noC)
	}
	if okB == 0 {
		return fmt.Errorf("the control pod never connected: the probe itself does not work")
	}
	return nil
}

func (k *checker) execAndLogs(ctx context.Context) error {
	out, err := k.exec(ctx, nsB, "client", "echo", "hello from exec")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "hello from exec") {
		return fmt.Errorf("exec printed %q", out)
	}
	logs, err := k.c.Kubectl(ctx, "logs", "-n", nsB, "early")
	if err != nil {
		return err
	}
	if !strings.Contains(logs, "DONE") {
		return fmt.Errorf("logs lack the pod's output: %q", logs)
	}
	return nil
}

func (k *checker) masquerade(ctx context.Context) error {
	stop, port, err := k.c.StartOutsideServer(k.o.k8s("agnhost"))
	if err != nil {
		return err
	}
	defer stop()
	url := fmt.Sprintf("http://%s:%d/clientip", k.c.ExtIP, port)
	var out string
	if err := pollFor(ctx, 20*time.Second, func() error {
		var err error
		out, err = k.exec(ctx, nsB, "client", "curl", "-s", "--max-time", "3", url)
		return err
	}); err != nil {
		return err
	}
	host := strings.TrimSpace(out)
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	node := k.c.Nodes[len(k.c.Nodes)-1]
	if host != node.IP.String() {
		return fmt.Errorf("the outside host saw %q, want the node's address %s", out, node.IP)
	}
	return nil
}

// agentPod returns the weir pod on node.
func (k *checker) agentPod(ctx context.Context, node string) (string, error) {
	pods, err := k.c.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/name=weir", FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			return p.Name, nil
		}
	}
	return "", fmt.Errorf("no weir pod on %s", node)
}

func (k *checker) weirctl(ctx context.Context) error {
	pod, err := k.agentPod(ctx, k.c.Nodes[0].Name)
	if err != nil {
		return err
	}
	out, err := k.exec(ctx, "kube-system", pod, "weirctl", "status")
	if err != nil {
		return err
	}
	k.logf("  weirctl status: %s", firstLines(out, 3))
	cases := []struct {
		from, want string
	}{{nsB + "/client", "ALLOWED"}, {nsB + "/other", "DENIED"}}
	for _, cs := range cases {
		out, err := k.exec(ctx, "kube-system", pod, "weirctl", "explain", cs.from, nsA+"/srv", "8080")
		if err != nil && cs.want == "ALLOWED" {
			return err
		}
		if !strings.Contains(out, cs.want) {
			return fmt.Errorf("weirctl explain %s %s/srv 8080 says %q, want %s", cs.from, nsA, firstLines(out, 3), cs.want)
		}
	}
	return nil
}

func firstLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, " / ")
}

var metricLine = regexp.MustCompile(`(?m)^weir_syncs_total(\{[^}]*\})? ([0-9.e+]+)$`)

func (k *checker) metrics(ctx context.Context) error {
	n := k.c.Nodes[0]
	out, err := k.c.NodeExec(ctx, n, "curl", "-s", "--max-time", "5", "http://127.0.0.1:9765/metrics")
	if err != nil {
		return err
	}
	m := metricLine.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("no weir_syncs_total in /metrics of %s", n.Name)
	}
	if v, _ := strconv.ParseFloat(m[2], 64); v < 1 {
		return fmt.Errorf("weir_syncs_total is %s", m[2])
	}
	if !strings.Contains(out, "weir_policy_rule_packets_total") {
		return fmt.Errorf("no per-rule counters in /metrics of %s", n.Name)
	}
	return nil
}

// rollingUpdate restarts the DaemonSet while two probe loops run: other →
// srv (denied: every connection that gets through is a leak) and client →
// srv (allowed: every failed connection is an allowed flow broken).
func (k *checker) rollingUpdate(ctx context.Context) error {
	svc := k.svcIP + ":80"
	type loop struct {
		pod     string
		ok, no  int
		err     error
		wantLow bool
	}
	loops := []*loop{{pod: "other"}, {pod: "client"}}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for _, l := range loops {
		wg.Add(1)
		go func(l *loop) {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				out, err := k.exec(ctx, nsB, l.pod, "/bin/sh", "-c", probeLoop(svc, 20, "1s"))
				if err != nil && !strings.Contains(out, "DONE") {
					l.err = err
					return
				}
				l.ok += strings.Count(out, "OK")
				l.no += strings.Count(out, "NO")
			}
		}(l)
	}
	// One allowed connection that lives through the whole rollout: a
	// request on it every half second must keep being answered. The stop
	// file is in /dev/shm, which the runtime mounts in every container
	// (the agnhost image built here has no /tmp).
	var held string
	var heldErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		held, heldErr = k.exec(ctx, nsB, "client", "/bin/bash", "-c", heldConnection(net.JoinHostPort(k.srvIP, "8080"), "/dev/shm/stop-held"))
	}()
	time.Sleep(3 * time.Second)
	_, err := k.c.Kubectl(ctx, "-n", "kube-system", "rollout", "restart", "daemonset/weir")
	if err == nil {
		_, err = k.c.Kubectl(ctx, "-n", "kube-system", "rollout", "status", "daemonset/weir", "--timeout=5m")
	}
	time.Sleep(3 * time.Second)
	close(done)
	if _, e := k.exec(ctx, nsB, "client", "touch", "/dev/shm/stop-held"); e != nil && err == nil {
		err = e
	}
	wg.Wait()
	if err != nil {
		return fmt.Errorf("rollout: %w", err)
	}
	k.logf("  long-lived allowed connection: %s", strings.TrimSpace(held))
	if heldErr != nil || !strings.HasPrefix(strings.TrimSpace(held), "KEPT") {
		return fmt.Errorf("the long-lived allowed connection broke during the rollout: %s %v", strings.TrimSpace(held), heldErr)
	}
	denied, allowed := loops[0], loops[1]
	k.logf("  during the rollout: denied flow %d through / %d blocked; allowed flow %d connected / %d broken",
		denied.ok, denied.no, allowed.ok, allowed.no)
	switch {
	case denied.err != nil:
		return denied.err
	case allowed.err != nil:
		return allowed.err
	case denied.ok > 0:
		return fmt.Errorf("%d connections got through against policy during the rollout", denied.ok)
	case allowed.ok == 0:
		return fmt.Errorf("the allowed flow never connected")
	case allowed.no > 0:
		return fmt.Errorf("%d connections of an allowed flow failed during the rollout", allowed.no)
	}
	return nil
}
