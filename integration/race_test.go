//go:build integration

package integration

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weir-cni/weir/internal/testkit"
)

const isolateSec = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: sec}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`

// hammer dials src->dst:port from netns in a tight loop until stop closes
// and counts connections that got through.
type hammer struct {
	attempts, leaks atomic.Int64
	wg              sync.WaitGroup
}

func (h *hammer) run(stop <-chan struct{}, netns ns.NetNS, src, dst netip.Addr, port int) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			h.attempts.Add(1)
			c, err := testkit.DialFrom(netns, src, dst, "tcp", port, 50*time.Millisecond)
			var oe *net.OpError
			if err == nil {
				h.leaks.Add(1)
				c.Close()
			} else if errors.As(err, &oe) && !isTimeout(err) {
				time.Sleep(5 * time.Millisecond) // no route / no address yet: do not spin
			}
		}
	}()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestNewPodNeverTalksAgainstPolicy(t *testing.T) {
	pods, nsLabels := policyPods()
	nsLabels["sec"] = map[string]string{"zone": "secure"}
	c := newPolicyCluster(t, pods, nsLabels)
	c.setPolicies(isolateSec)

	// The pod object exists before the runtime wires it, as the kubelet
	// sees it; its address is not known to the cluster yet.
	before, _ := c.status()
	c.writeManifest("newpod.yaml", `
apiVersion: v1
kind: Pod
metadata: {name: newpod, namespace: sec, labels: {app: new}}
spec: {nodeName: `+nodeName+`, containers: [{name: c, image: x}]}
status: {phase: Pending}
`)
	c.waitSynced(before.Syncs)

	p := &tpod{ns: "sec", name: "newpod", ips: []string{"172.17.0.50", "fd00:17::50"}}
	p.netns = testkit.NewTestNS(t, "weirpr")
	testkit.ServeEcho(t, p.netns, 80, 8080)
	client := c.pods["prod/client"]
	newIP, clientIP := netip.MustParseAddr("172.17.0.50"), netip.MustParseAddr("172.17.0.20")
	stop := make(chan struct{})
	var in, out hammer
	in.run(stop, client.netns, clientIP, newIP, 8080)
	out.run(stop, p.netns, newIP, clientIP, 80)

	c.pluginExtra = `"agentWait":"10s","failClosed":true,`
	res, err := p.addCall(c.netconf()).Exec(context.Background(), c.node, weirBin())
	if err != nil || res.Err != nil {
		t.Fatalf("ADD: %v %v %s", err, res.Err, res.Stderr)
	}
	time.Sleep(time.Second)
	close(stop)
	in.wg.Wait()
	out.wg.Wait()
	t.Logf("probes into the new pod: %d, out of it: %d", in.attempts.Load(), out.attempts.Load())
	if n := in.leaks.Load(); n != 0 {
		t.Errorf("%d connections reached the new pod against policy", n)
	}
	if n := out.leaks.Load(); n != 0 {
		t.Errorf("%d connections left the new pod against policy", n)
	}
	if in.attempts.Load() < 5 || out.attempts.Load() < 5 {
		t.Errorf("too few probes to mean anything: in %d out %d", in.attempts.Load(), out.attempts.Load())
	}
	// Positive controls: the pod is wired (its node reaches it), and the
	// same probe gets through once policy allows it.
	c.pods["sec/newpod"] = p
	c.run([]testkit.Probe{tcp("node", "sec/newpod", 8080, true)})
	c.setPolicies("")
	c.run([]testkit.Probe{tcp("prod/client", "sec/newpod", 8080, true), tcp("sec/newpod", "prod/client", 80, true)})
}

func TestAgentCrashLoopNeverOpensTheNode(t *testing.T) {
	pods, nsLabels := policyPods()
	c := newPolicyCluster(t, pods, nsLabels)
	c.setPolicies(isolateSec)
	client, web := c.pods["prod/client"], c.pods["default/web"]
	stop := make(chan struct{})
	var h hammer
	h.run(stop, client.netns, netip.MustParseAddr(client.ips[0]), netip.MustParseAddr(web.ips[0]), 8080)
	for i := 0; i < 6; i++ {
		c.stopAgent() // SIGKILL
		time.Sleep(100 * time.Millisecond)
		c.spawnAgent()
		c.waitSynced(0)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	h.wg.Wait()
	t.Logf("%d probes across 6 agent crashes", h.attempts.Load())
	if n := h.leaks.Load(); n != 0 {
		t.Errorf("%d connections got through against policy while the agent crashed and restarted", n)
	}
	c.run([]testkit.Probe{tcp("node", "default/web", 8080, true), tcp("prod/client", "default/web", 8080, false)})
}
