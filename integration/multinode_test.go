//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/integration/kube"
	"github.com/weir-cni/weir/internal/testkit"
)

// simNode is one simulated node: its namespace on the underlay, its pod
// ranges and its agent.
type simNode struct {
	name     string
	ns       *testkit.NS
	addr4    string
	addr6    string
	cidr4    string
	cidr6    string
	dataDir  string
	sock     string
	agent    *exec.Cmd
	agentLog string
}

// simCluster is several node namespaces joined by a bridge in an underlay
// namespace, each running weir-agent against one shared manifests directory.
type simCluster struct {
	t *testing.T
	// kc, when set, is the API server the agents follow; objects are
	// registered there instead of in the manifests directory.
	kc        *kube.Cluster
	underlay  *testkit.NS
	nodes     []*simNode
	manifests string
	pods      map[string]*tpod
	podNode   map[string]*simNode
	docs      []string
}

func newSimCluster(t *testing.T, n int) *simCluster {
	t.Helper()
	c := &simCluster{t: t, manifests: filepath.Join(t.TempDir(), "manifests")}
	if err := os.MkdirAll(c.manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	c.wire(n)
	return c
}

// wire makes the underlay and n nodes plugged into it.
func (c *simCluster) wire(n int) {
	c.t.Helper()
	c.pods, c.podNode = map[string]*tpod{}, map[string]*simNode{}
	c.underlay = newUnderlay(c.t)
	for i := 1; i <= n; i++ {
		c.addNode(i)
	}
}

// newUnderlay makes the namespace holding the bridge the nodes plug into.
func newUnderlay(t *testing.T) *testkit.NS {
	t.Helper()
	u := testkit.NewTestNS(t, "weirmu")
	err := u.Do(func(ns.NetNS) error {
		// No multicast snooping: with no MLD querier on this wire, a
		// snooping bridge may drop the neighbour solicitations IPv6 needs.
		off := false
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}, MulticastSnooping: &off}
		if err := netlink.LinkAdd(br); err != nil {
			return err
		}
		return netlink.LinkSetUp(br)
	})
	if err != nil {
		t.Fatalf("underlay bridge: %v", err)
	}
	return u
}

// delCall is the CNI DEL of pod p on node nd.
func delCall(nd *simNode, p *tpod) testkit.Call {
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"weirmn","type":"weir","ipam":{"ranges":[{"subnet":%q},{"subnet":%q}],"dataDir":%q}}`,
		nd.cidr4, nd.cidr6, filepath.Join(nd.dataDir, "ipam"))
	return testkit.Call{Command: "DEL", ContainerID: "ctr-" + p.ns + "-" + p.name, Netns: p.netns.Path(), IfName: "eth0",
		Path: pluginDir, Conf: []byte(conf)}
}

func (c *simCluster) addNode(i int) {
	t := c.t
	nd := &simNode{name: fmt.Sprintf("node-%d", i), addr4: fmt.Sprintf("192.168.60.%d", i), addr6: fmt.Sprintf("fd00:60::%d", i),
		cidr4: fmt.Sprintf("10.200.%d.0/24", i), cidr6: fmt.Sprintf("fd00:200:%d::/64", i), dataDir: t.TempDir()}
	nd.sock = filepath.Join(nd.dataDir, "run", "agent.sock") // a directory of its own, as the agent requires
	nd.ns = testkit.NewTestNS(t, "weirmn")
	port := fmt.Sprintf("n%d", i)
	err := nd.ns.Do(func(ns.NetNS) error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: port, PeerNamespace: netlink.NsFd(int(c.underlay.Fd()))}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		for _, a := range []string{nd.addr4 + "/24", nd.addr6 + "/64"} {
			addr, _ := netlink.ParseAddr(a)
			addr.Flags |= 0x02 // IFA_F_NODAD
			if err := netlink.AddrAdd(veth, addr); err != nil {
				return err
			}
		}
		return netlink.LinkSetUp(veth)
	})
	if err != nil {
		t.Fatalf("node %d: %v", i, err)
	}
	err = c.underlay.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(port)
		if err != nil {
			return err
		}
		br, err := netlink.LinkByName("br0")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMaster(l, br); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		t.Fatalf("underlay port %d: %v", i, err)
	}
	if c.kc != nil {
		ctx := context.Background()
		node, err := kube.CreateNode(ctx, c.kc.Client, nd.name, []string{nd.cidr4, nd.cidr6}, nd.addr4)
		if err == nil {
			node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: nd.addr6})
			_, err = c.kc.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatalf("register node: %v", err)
		}
	}
	c.docs = append(c.docs, fmt.Sprintf(`{"apiVersion":"v1","kind":"Node","metadata":{"name":%q},
		"spec":{"podCIDRs":[%q,%q]},"status":{"addresses":[{"type":"InternalIP","address":%q},{"type":"InternalIP","address":%q}]}}`,
		nd.name, nd.cidr4, nd.cidr6, nd.addr4, nd.addr6))
	c.nodes = append(c.nodes, nd)
}

// addPod wires p on node nd with the plugin, requesting its addresses.
// With an API server the pod object is created first (as the scheduler and
// kubelet would), ADD waits for the agent, and status.podIPs is written
// after ADD returns, as the kubelet does.
func (c *simCluster) addPod(nd *simNode, p *tpod) {
	t := c.t
	ctx := context.Background()
	if c.kc != nil {
		if _, err := kube.CreatePod(ctx, c.kc.Client, kube.Pod{Namespace: p.ns, Name: p.name, Node: nd.name, Labels: p.labels}); err != nil {
			t.Fatalf("create pod %s/%s: %v", p.ns, p.name, err)
		}
	}
	p.netns = testkit.NewTestNS(t, "weirmp")
	wait := `"agentWait":"0s","failClosed":false,` // pods wired before the agents start
	if c.kc != nil {
		wait = `"agentWait":"10s","failClosed":true,`
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"weirmn","type":"weir",%s"agentSocket":%q,
		"ipam":{"ranges":[{"subnet":%q},{"subnet":%q}],"dataDir":%q}}`, wait, nd.sock, nd.cidr4, nd.cidr6, filepath.Join(nd.dataDir, "ipam"))
	out, err := p.addCall([]byte(conf)).Exec(ctx, nd.ns, weirBin())
	if err != nil || out.Err != nil {
		t.Fatalf("ADD %s/%s: %v %v %s", p.ns, p.name, err, out.Err, out.Stderr)
	}
	if c.kc != nil {
		pod, err := c.kc.Client.CoreV1().Pods(p.ns).Get(ctx, p.name, metav1.GetOptions{})
		if err == nil {
			_, err = kube.SetPodIPs(ctx, c.kc.Client, pod, nd.addr4, p.ips...)
		}
		if err != nil {
			t.Fatalf("pod %s/%s status: %v", p.ns, p.name, err)
		}
	}
	testkit.ServeEcho(t, p.netns, 8080, 9090)
	l, _ := json.Marshal(p.labels)
	var ips []string
	for _, ip := range p.ips {
		ips = append(ips, fmt.Sprintf(`{"ip":%q}`, ip))
	}
	c.docs = append(c.docs, fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":%q,"name":%q,"labels":%s},
		"spec":{"nodeName":%q,"containers":[{"name":"c","image":"x"}]},"status":{"phase":"Running","podIPs":[%s]}}`,
		p.ns, p.name, l, nd.name, strings.Join(ips, ",")))
	c.pods[p.ns+"/"+p.name] = p
	c.podNode[p.ns+"/"+p.name] = nd
}

func (c *simCluster) writeObjects() {
	body := `{"apiVersion":"v1","kind":"List","items":[` + strings.Join(c.docs, ",") + `]}`
	if err := os.WriteFile(filepath.Join(c.manifests, "cluster.json"), []byte(body), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *simCluster) writePolicies(yaml string) {
	tmp := filepath.Join(c.manifests, ".policies.tmp")
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.manifests, "policies.yaml")); err != nil {
		c.t.Fatal(err)
	}
}

func (c *simCluster) startAgents() {
	for _, nd := range c.nodes {
		nd.agentLog = filepath.Join(nd.dataDir, "agent.log")
		logf, err := os.Create(nd.agentLog)
		if err != nil {
			c.t.Fatal(err)
		}
		nd.agent = exec.Command(weirAgentBin(c.t), "--node-name", nd.name, "--socket", nd.sock,
			"--cluster-cidr", "10.200.0.0/16,fd00:200::/32")
		if c.kc != nil {
			kcfg, err := c.kc.KubeconfigFor(nd.ns.Path())
			if err != nil {
				c.t.Fatal(err)
			}
			nd.agent.Args = append(nd.agent.Args, "--kubeconfig", kcfg)
		} else {
			nd.agent.Args = append(nd.agent.Args, "--manifests", c.manifests, "--manifests-poll", "50ms")
		}
		nd.agent.Stdout, nd.agent.Stderr = logf, logf
		if err := testkit.StartIn(nd.ns, nd.agent); err != nil {
			c.t.Fatal(err)
		}
		c.t.Cleanup(func() {
			_ = nd.agent.Process.Kill()
			_ = nd.agent.Wait()
			logf.Close()
			if c.t.Failed() {
				b, _ := os.ReadFile(nd.agentLog)
				c.t.Logf("agent %s log:\n%s", nd.name, b)
			}
		})
	}
}

// syncs returns each agent's sync count (-1 when not answering).
func (c *simCluster) syncs() []int {
	out := make([]int, len(c.nodes))
	for i, nd := range c.nodes {
		out[i] = -1
		if st, err := testkit.Status(context.Background(), nd.sock); err == nil && st.Synced && st.LastError == "" {
			out[i] = st.Syncs
		}
	}
	return out
}

// waitAllSynced waits until every agent synced more often than before.
func (c *simCluster) waitAllSynced(before []int) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		now := c.syncs()
		ok := true
		for i := range now {
			ok = ok && now[i] > before[i]
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("agents did not sync: before %v now %v", before, now)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *simCluster) setPolicies(yaml string) {
	c.t.Helper()
	before := c.syncs()
	c.writePolicies(yaml)
	c.waitAllSynced(before)
}

// probeAll checks every probe (pods only) and reports mismatches.
func (c *simCluster) probeAll(t *testing.T, probes []testkit.Probe) {
	t.Helper()
	for _, p := range probes {
		err := c.try(p, probeTimeout(p))
		if (err == nil) != p.Want {
			t.Errorf("%s: allowed=%v, want %v (%v)", p, err == nil, p.Want, err)
		}
	}
}

// try runs one pod-to-pod probe, each step bounded by timeout: nil when
// the echo came back.
func (c *simCluster) try(p testkit.Probe, timeout time.Duration) error {
	src, dst := c.pods[p.From], c.pods[p.To]
	return testkit.Exchange(src.netns, family(src.ips, p.V6), family(dst.ips, p.V6), p.Proto, p.Port, timeout)
}

// family is the first address of ips of the family v6 says, or none.
func family(ips []string, v6 bool) netip.Addr {
	for _, s := range ips {
		if a := netip.MustParseAddr(s); a.Is6() == v6 {
			return a
		}
	}
	return netip.Addr{}
}

func TestMultiNodeRoutesAndPolicies(t *testing.T) {
	c := newSimCluster(t, 3)
	c.addPod(c.nodes[0], &tpod{ns: "a", name: "client", labels: map[string]string{"app": "client"}, ips: []string{"10.200.1.10", "fd00:200:1::10"}})
	c.addPod(c.nodes[1], &tpod{ns: "b", name: "server", labels: map[string]string{"app": "server"}, ips: []string{"10.200.2.10", "fd00:200:2::10"}})
	c.addPod(c.nodes[2], &tpod{ns: "c", name: "other", labels: map[string]string{"app": "other"}, ips: []string{"10.200.3.10", "fd00:200:3::10"}})
	c.writeObjects()
	c.writePolicies("")
	c.startAgents()
	c.waitAllSynced([]int{0, 0, 0})

	t.Run("cross-node traffic flows through the agents' routes", func(t *testing.T) {
		// eventually: the first packets between fresh nodes wait on
		// neighbour discovery across the underlay.
		c.eventually(t, []testkit.Probe{
			tcp("a/client", "b/server", 8080, true), udp("a/client", "b/server", 8080, true),
			tcp("c/other", "b/server", 8080, true), tcp("b/server", "c/other", 9090, true),
			v6(tcp("a/client", "b/server", 8080, true)), v6(udp("c/other", "a/client", 9090, true)),
		})
	})
	t.Run("policies hold across nodes in both directions", func(t *testing.T) {
		c.setPolicies(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-from-client, namespace: b}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 8080}, {port: 8080, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-to-server, namespace: a}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {}, podSelector: {matchLabels: {app: server}}}]
`)
		c.probeAll(t, []testkit.Probe{
			tcp("a/client", "b/server", 8080, true), udp("a/client", "b/server", 8080, true),
			v6(tcp("a/client", "b/server", 8080, true)),
			tcp("a/client", "b/server", 9090, false), // ingress port
			tcp("c/other", "b/server", 8080, false),  // ingress peer (enforced on node-2)
			v6(udp("c/other", "b/server", 8080, false)),
			tcp("a/client", "c/other", 9090, false), // egress (enforced on node-1)
			v6(tcp("a/client", "c/other", 9090, false)),
			tcp("c/other", "a/client", 9090, true), // client ingress not isolated
		})
	})
	t.Run("a node that leaves takes its routes along", func(t *testing.T) {
		before := c.syncs()
		c.docs = c.docs[1:] // node-1's Node object is first
		c.writeObjects()
		c.waitAllSynced(before)
		var routes []string
		_ = c.nodes[1].ns.Do(func(ns.NetNS) error {
			rs, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
			for _, r := range rs {
				if r.Dst != nil {
					routes = append(routes, r.Dst.String())
				}
			}
			return nil
		})
		joined := strings.Join(routes, " ")
		if strings.Contains(joined, "10.200.1.0/24") || !strings.Contains(joined, "10.200.3.0/24") {
			t.Errorf("node-2 routes after node-1 left: %s", joined)
		}
	})
}
