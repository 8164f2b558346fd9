//go:build integration

package integration

import (
	"context"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/integration/kube"
	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/testkit"
)

// newKubeSimCluster is a simulated cluster of n nodes whose agents follow a
// real kube-apiserver (etcd + kube-apiserver started by the harness).
func newKubeSimCluster(t *testing.T, n int, nsLabels map[string]map[string]string) *simCluster {
	t.Helper()
	kc := kube.StartT(t, kube.Options{})
	ctx := context.Background()
	for name, l := range nsLabels {
		if _, err := kube.CreateNamespace(ctx, kc.Client, name, l); err != nil {
			t.Fatal(err)
		}
	}
	c := &simCluster{t: t, kc: kc, manifests: t.TempDir()}
	c.wire(n)
	return c
}

// eventually retries the probes until they all hold or the deadline passes
// (API changes reach the agents asynchronously), then reports the last
// mismatches. Retry passes give every probe probeWait: an allowed probe
// that times out there is tried again on the next pass, where waiting
// allowWait for a probe the agents do not allow yet would only slow the
// retries down. The last pass, after the deadline, gives allowed probes
// allowWait (see probeTimeout), so that a loaded machine does not fail them.
func (c *simCluster) eventually(t *testing.T, probes []testkit.Probe) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		last := time.Now().After(deadline)
		var bad []testkit.Probe
		for _, p := range probes {
			wait := probeWait
			if last {
				wait = probeTimeout(p)
			}
			if err := c.try(p, wait); (err == nil) != p.Want {
				bad = append(bad, p)
			}
		}
		if len(bad) == 0 {
			return
		}
		if last {
			for _, p := range bad {
				t.Errorf("%s: still not allowed=%v after 10s", p, p.Want)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const serverFromClient = `
metadata: {name: server-from-client, namespace: b}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {env: trusted}}, podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 8080}, {port: 8080, protocol: UDP}]
`

func TestKubeAgentsEnforceAcrossNodes(t *testing.T) {
	ctx := context.Background()
	c := newKubeSimCluster(t, 3, map[string]map[string]string{"a": {"env": "trusted"}, "b": {}, "c": {"env": "trusted"}})
	c.startAgents()
	c.waitAllSynced([]int{0, 0, 0})
	c.addPod(c.nodes[0], &tpod{ns: "a", name: "client", labels: map[string]string{"app": "client"}, ips: []string{"10.200.1.10", "fd00:200:1::10"}})
	c.addPod(c.nodes[1], &tpod{ns: "b", name: "server", labels: map[string]string{"app": "server"}, ips: []string{"10.200.2.10", "fd00:200:2::10"}})
	c.addPod(c.nodes[2], &tpod{ns: "c", name: "other", labels: map[string]string{"app": "other"}, ips: []string{"10.200.3.10", "fd00:200:3::10"}})
	client := c.kc.Client

	t.Run("cross-node traffic through the agents' routes", func(t *testing.T) {
		c.eventually(t, []testkit.Probe{tcp("a/client", "b/server", 8080, true), udp("c/other", "a/client", 9090, true),
			v6(tcp("a/client", "b/server", 8080, true)), tcp("b/server", "c/other", 9090, true)})
	})
	if _, err := kube.CreatePolicy(ctx, client, fixtures.Policy(t, serverFromClient)); err != nil {
		t.Fatal(err)
	}
	t.Run("policy holds across nodes, TCP and UDP", func(t *testing.T) {
		c.eventually(t, []testkit.Probe{
			tcp("a/client", "b/server", 8080, true), udp("a/client", "b/server", 8080, true), v6(tcp("a/client", "b/server", 8080, true)),
			tcp("c/other", "b/server", 8080, false), udp("c/other", "b/server", 8080, false),
			tcp("a/client", "b/server", 9090, false), tcp("b/server", "a/client", 9090, true),
		})
	})
	t.Run("pod label change", func(t *testing.T) {
		if err := kube.SetPodLabels(ctx, client, "c", "other", map[string]string{"app": "client"}); err != nil {
			t.Fatal(err)
		}
		c.eventually(t, []testkit.Probe{tcp("c/other", "b/server", 8080, true)})
		if err := kube.SetPodLabels(ctx, client, "a", "client", map[string]string{"app": "nobody"}); err != nil {
			t.Fatal(err)
		}
		c.eventually(t, []testkit.Probe{tcp("a/client", "b/server", 8080, false), tcp("c/other", "b/server", 8080, true)})
	})
	t.Run("namespace label change", func(t *testing.T) {
		if err := kube.SetNamespaceLabels(ctx, client, "c", map[string]string{"env": "untrusted"}); err != nil {
			t.Fatal(err)
		}
		c.eventually(t, []testkit.Probe{tcp("c/other", "b/server", 8080, false)})
	})
	t.Run("policy edited", func(t *testing.T) {
		spec := fixtures.Policy(t, serverFromClient).Spec
		spec.Ingress[0].From = nil // every peer
		spec.Ingress[0].Ports = spec.Ingress[0].Ports[:1]
		if err := kube.UpdatePolicy(ctx, client, "b", "server-from-client", spec); err != nil {
			t.Fatal(err)
		}
		c.eventually(t, []testkit.Probe{tcp("c/other", "b/server", 8080, true), udp("c/other", "b/server", 8080, false), tcp("a/client", "b/server", 9090, false)})
	})
	t.Run("policy deleted", func(t *testing.T) {
		if err := kube.DeletePolicy(ctx, client, "b", "server-from-client"); err != nil {
			t.Fatal(err)
		}
		c.eventually(t, []testkit.Probe{udp("c/other", "b/server", 8080, true), tcp("a/client", "b/server", 9090, true)})
	})
}

func TestKubePodIPReuseTakesTheNewPodsPolicy(t *testing.T) {
	ctx := context.Background()
	c := newKubeSimCluster(t, 2, map[string]map[string]string{"a": {}, "b": {}})
	c.startAgents()
	c.waitAllSynced([]int{0, 0})
	c.addPod(c.nodes[0], &tpod{ns: "a", name: "client", labels: map[string]string{"app": "client"}, ips: []string{"10.200.1.10", "fd00:200:1::10"}})
	c.addPod(c.nodes[1], &tpod{ns: "b", name: "old", labels: map[string]string{"app": "open"}, ips: []string{"10.200.2.20", "fd00:200:2::20"}})
	if _, err := kube.CreatePolicy(ctx, c.kc.Client, fixtures.Policy(t, `
metadata: {name: lock, namespace: b}
spec:
  podSelector: {matchLabels: {app: locked}}
  ingress: []
`)); err != nil {
		t.Fatal(err)
	}
	c.eventually(t, []testkit.Probe{tcp("a/client", "b/old", 8080, true)})

	// The old pod goes away; a new, locked pod gets the very same address.
	if err := kube.DeletePod(ctx, c.kc.Client, "b", "old"); err != nil {
		t.Fatal(err)
	}
	old := c.pods["b/old"]
	call := delCall(c.nodes[1], old)
	if out, err := call.Exec(ctx, c.nodes[1].ns, weirBin()); err != nil || out.Err != nil {
		t.Fatalf("DEL: %v %v", err, out.Err)
	}
	c.addPod(c.nodes[1], &tpod{ns: "b", name: "new", labels: map[string]string{"app": "locked"}, ips: []string{"10.200.2.20", "fd00:200:2::20"}})
	c.eventually(t, []testkit.Probe{tcp("a/client", "b/new", 8080, false), v6(tcp("a/client", "b/new", 8080, false))})
}

// TestKubePodBeingDeletedStaysIsolated deletes a pod with a grace period.
// With no kubelet to finish it, the API server keeps it, being deleted,
// as it would while the pod's containers stop: the agents must keep it
// isolated and keep it in the peers of other policies meanwhile, and let
// it go once it is finished.
func TestKubePodBeingDeletedStaysIsolated(t *testing.T) {
	ctx := context.Background()
	c := newKubeSimCluster(t, 3, map[string]map[string]string{"a": {}, "b": {}})
	c.startAgents()
	c.waitAllSynced([]int{0, 0, 0})
	client := c.kc.Client
	c.addPod(c.nodes[0], &tpod{ns: "a", name: "client", labels: map[string]string{"app": "client"}, ips: []string{"10.200.1.10", "fd00:200:1::10"}})
	c.addPod(c.nodes[0], &tpod{ns: "a", name: "other", labels: map[string]string{"app": "other"}, ips: []string{"10.200.1.11", "fd00:200:1::11"}})
	c.addPod(c.nodes[1], &tpod{ns: "b", name: "server", labels: map[string]string{"app": "server"}, ips: []string{"10.200.2.10", "fd00:200:2::10"}})
	c.addPod(c.nodes[2], &tpod{ns: "b", name: "db", labels: map[string]string{"app": "db"}, ips: []string{"10.200.3.10", "fd00:200:3::10"}})
	// server takes client (and the marker); db takes server (and the
	// marker). Each node enforces its own pod's ingress.
	for _, y := range []string{`
metadata: {name: server-ingress, namespace: b}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: client}}},
           {namespaceSelector: {}, podSelector: {matchLabels: {app: marker}}}]
`, `
metadata: {name: db-ingress, namespace: b}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: server}}},
           {namespaceSelector: {}, podSelector: {matchLabels: {app: marker}}}]
`} {
		if _, err := kube.CreatePolicy(ctx, client, fixtures.Policy(t, y)); err != nil {
			t.Fatal(err)
		}
	}
	isolated := []testkit.Probe{
		tcp("a/client", "b/server", 8080, true), tcp("b/db", "b/server", 8080, false), // server's ingress
		tcp("b/server", "b/db", 8080, true), v6(tcp("b/server", "b/db", 8080, true)), // server a peer of db
		tcp("a/client", "b/db", 8080, false),
	}
	c.eventually(t, append(isolated, tcp("a/other", "b/server", 8080, false), tcp("a/other", "b/db", 8080, false)))
	if t.Failed() {
		t.FailNow()
	}

	grace := int64(600)
	if err := client.CoreV1().Pods("b").Delete(ctx, "server", metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	if p, err := client.CoreV1().Pods("b").Get(ctx, "server", metav1.GetOptions{}); err != nil || p.DeletionTimestamp == nil {
		t.Fatalf("server after a graceful delete: %v, err %v; want it kept, being deleted", p, err)
	}
	// A change the pods watch delivers after the deletion, seen by both
	// nodes that enforce: once it holds, so does the deletion.
	if err := kube.SetPodLabels(ctx, client, "a", "other", map[string]string{"app": "marker"}); err != nil {
		t.Fatal(err)
	}
	c.eventually(t, []testkit.Probe{tcp("a/other", "b/server", 8080, true), tcp("a/other", "b/db", 8080, true)})
	t.Run("being deleted: still isolated, still a peer", func(t *testing.T) {
		c.probeAll(t, isolated)
	})

	t.Run("finished: its address is no pod's", func(t *testing.T) {
		p, err := client.CoreV1().Pods("b").Get(ctx, "server", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodSucceeded
		if _, err := client.CoreV1().Pods("b").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// No longer a peer of db-ingress, and no longer isolated by
		// server-ingress: with no kubelet to DEL it, its host veth stays,
		// in namespace b's link group, so its address is an unclassified
		// pod's and b's default deny (b has Ingress policies) holds it,
		// even against the marker server-ingress admitted.
		c.eventually(t, []testkit.Probe{tcp("b/server", "b/db", 8080, false), tcp("b/db", "b/server", 8080, false),
			tcp("a/other", "b/server", 8080, false)})
	})
}

// restartAgent kills node nd's agent with SIGKILL and starts a new one.
func (c *simCluster) restartAgent(nd *simNode) {
	_ = nd.agent.Process.Kill()
	_ = nd.agent.Wait()
	cmd := exec.Command(nd.agent.Path, nd.agent.Args[1:]...)
	cmd.Stdout, cmd.Stderr = nd.agent.Stdout, nd.agent.Stderr
	if err := testkit.StartIn(nd.ns, cmd); err != nil {
		c.t.Fatal(err)
	}
	nd.agent = cmd
}

func TestKubeOutagesNeverOpenTheNode(t *testing.T) {
	ctx := context.Background()
	c := newKubeSimCluster(t, 2, map[string]map[string]string{"a": {}, "b": {}})
	if _, err := kube.CreatePolicy(ctx, c.kc.Client, fixtures.Policy(t, `
metadata: {name: only-client, namespace: b}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}]}]
`)); err != nil {
		t.Fatal(err)
	}

	t.Run("agents started before the API server is up", func(t *testing.T) {
		if err := c.kc.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		c.startAgents()
		time.Sleep(2 * time.Second)
		for i, n := range c.syncs() {
			if n > 0 {
				t.Errorf("agent %d synced without an API server", i)
			}
		}
		if err := c.kc.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		c.waitAllSynced([]int{0, 0})
	})
	c.addPod(c.nodes[0], &tpod{ns: "a", name: "client", labels: map[string]string{"app": "client"}, ips: []string{"10.200.1.10", "fd00:200:1::10"}})
	c.addPod(c.nodes[0], &tpod{ns: "a", name: "other", labels: map[string]string{"app": "other"}, ips: []string{"10.200.1.11", "fd00:200:1::11"}})
	c.addPod(c.nodes[1], &tpod{ns: "b", name: "server", labels: map[string]string{"app": "server"}, ips: []string{"10.200.2.10", "fd00:200:2::10"}})
	c.eventually(t, []testkit.Probe{tcp("a/client", "b/server", 8080, true), tcp("a/other", "b/server", 8080, false)})

	other, server := c.pods["a/other"], c.pods["b/server"]
	hammerDenied := func() (chan struct{}, *hammer) {
		stop := make(chan struct{})
		h := &hammer{}
		h.run(stop, other.netns, netip.MustParseAddr(other.ips[0]), netip.MustParseAddr(server.ips[0]), 8080)
		return stop, h
	}
	t.Run("API server stopped and restarted", func(t *testing.T) {
		stop, h := hammerDenied()
		if err := c.kc.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		c.probeAll(t, []testkit.Probe{tcp("a/client", "b/server", 8080, true), tcp("a/other", "b/server", 8080, false)})
		time.Sleep(2 * time.Second)
		if err := c.kc.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		close(stop)
		h.wg.Wait()
		if n := h.leaks.Load(); n != 0 {
			t.Errorf("%d of %d denied connections got through during the outage", n, h.attempts.Load())
		}
		// The agents reconnect, relist and follow changes again.
		if err := kube.SetPodLabels(ctx, c.kc.Client, "a", "other", map[string]string{"app": "client"}); err != nil {
			t.Fatal(err)
		}
		c.eventually(t, []testkit.Probe{tcp("a/other", "b/server", 8080, true)})
		if err := kube.SetPodLabels(ctx, c.kc.Client, "a", "other", map[string]string{"app": "other"}); err != nil {
			t.Fatal(err)
		}
		c.eventually(t, []testkit.Probe{tcp("a/other", "b/server", 8080, false)})
	})
	t.Run("agents killed and restarted in a loop", func(t *testing.T) {
		stop, h := hammerDenied()
		for i := 0; i < 4; i++ {
			for _, nd := range c.nodes {
				c.restartAgent(nd)
			}
			time.Sleep(300 * time.Millisecond)
		}
		c.waitAllSynced([]int{0, 0})
		close(stop)
		h.wg.Wait()
		t.Logf("%d denied probes across 4 crash loops", h.attempts.Load())
		if n := h.leaks.Load(); n != 0 {
			t.Errorf("%d denied connections got through while agents crashed", n)
		}
		c.probeAll(t, []testkit.Probe{tcp("a/client", "b/server", 8080, true)})
	})
}
