//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weir-cni/weir/internal/testkit"
)

// The simulated node of the policy tests: one node namespace running the
// plugin and weir-agent, pods in their own namespaces, and an "external"
// namespace behind the node holding addresses inside and outside the
// ipBlocks of the policies under test.
const (
	nodeName  = "node-a"
	nodeAddr4 = "192.168.50.1"
	nodeAddr6 = "fd00:50::1"
	extLink4  = "192.168.50.2"
	extLink6  = "fd00:50::2"
	policyNet = "weirpol"
	probeWait = time.Second
	// allowWait is how long a probe that should pass may take: its echo
	// returns at once on a healthy machine, so only a loaded one waits
	// (the 1 s of probeWait timed allowed probes out at load 10-14).
	allowWait = 5 * time.Second
)

// probeTimeout is how long p may take: a denied probe passes by timing
// out, so it keeps probeWait; an allowed one returns as soon as it passes.
func probeTimeout(p testkit.Probe) time.Duration {
	if p.Want {
		return allowWait
	}
	return probeWait
}

// probePorts are the ports every pod, the node and the external namespace
// serve an echo on.
var probePorts = []int{80, 5353, 5978, 6379, 8080, 9001, 9003}

// extAddrs are the external host's addresses, each routed to it by the node.
var extAddrs = []string{"172.17.5.5", "10.0.0.5", "10.0.1.5", "fd00:e::5", "fd00:e::6"}

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// weirAgentBin builds ./cmd/weir-agent once per test binary.
func weirAgentBin(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		agentPath = filepath.Join(pluginDir, "weir-agent")
		agentErr = testkit.GoBuild(context.Background(), "github.com/weir-cni/weir/cmd/weir-agent", agentPath)
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentPath
}

// tpod is a test pod: its namespace, labels, addresses and named ports.
type tpod struct {
	ns, name string
	labels   map[string]string
	ips      []string
	ports    []cport
	netns    *testkit.NS
}

// addCall is the CNI ADD of p, as the runtime makes it: pod name and
// namespace, and the addresses the test wants, in CNI_ARGS.
func (p *tpod) addCall(conf []byte) testkit.Call {
	return testkit.Call{Command: "ADD", ContainerID: "ctr-" + p.ns + "-" + p.name, Netns: p.netns.Path(), IfName: "eth0",
		Args: "K8S_POD_NAMESPACE=" + p.ns + ";K8S_POD_NAME=" + p.name + ";IP=" + strings.Join(p.ips, ","),
		Path: pluginDir, Conf: conf}
}

type cport struct {
	name, proto string
	port        int
}

type cluster struct {
	t      *testing.T
	node   *testkit.NS
	ext    *testkit.NS
	pods   map[string]*tpod
	nsLbls map[string]map[string]string
	dir    string
	sock   string
	agent  *exec.Cmd
	// backend is weir-agent's --backend (default auto: nftables).
	backend string
	// noNFTables runs the agent as on a kernel without nf_tables.
	noNFTables bool
	// pluginExtra is spliced into the plugin config (JSON members ending in
	// a comma); by default the plugin does not wait for the agent.
	pluginExtra string
	// agentArgs are more weir-agent flags.
	agentArgs []string
}

// clusterOption adjusts a policy cluster before its agent starts.
type clusterOption func(*cluster)

// withBackend runs the agent with --backend b.
func withBackend(b string) clusterOption { return func(c *cluster) { c.backend = b } }

// withAgentArgs adds weir-agent flags.
func withAgentArgs(args ...string) clusterOption {
	return func(c *cluster) { c.agentArgs = append(c.agentArgs, args...) }
}

// withoutNFTables runs the agent as on a kernel without nf_tables.
func withoutNFTables() clusterOption { return func(c *cluster) { c.noNFTables = true } }

// newPolicyCluster wires pods into one node namespace with the plugin,
// writes them as manifests and starts the agent (nftables unless an option
// says otherwise).
func newPolicyCluster(t *testing.T, pods []*tpod, nsLabels map[string]map[string]string, opts ...clusterOption) *cluster {
	t.Helper()
	c := &cluster{t: t, pods: map[string]*tpod{}, nsLbls: nsLabels, dir: t.TempDir(), pluginExtra: `"agentWait":"0s","failClosed":false,`}
	for _, o := range opts {
		o(c)
	}
	c.sock = filepath.Join(c.dir, "run", "agent.sock") // a directory of its own, as the agent requires
	c.node = testkit.NewTestNS(t, "weirpn")
	c.ext = testkit.NewTestNS(t, "weirpx")
	if err := c.node.AddAddrs(nodeAddr4 + "/32"); err != nil {
		t.Fatal(err)
	}
	c.linkExternal()
	if err := os.MkdirAll(filepath.Join(c.dir, "manifests"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		c.addPod(p)
	}
	for _, target := range []*testkit.NS{c.ext, c.node} {
		testkit.ServeEcho(t, target, probePorts...)
	}
	c.writeBase()
	c.startAgent()
	return c
}

// linkExternal joins the external namespace to the node with a veth and
// routes the external addresses through it.
func (c *cluster) linkExternal() {
	t := c.t
	err := c.node.Do(func(ns.NetNS) error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ext0"}, PeerName: "up0", PeerNamespace: netlink.NsFd(int(c.ext.Fd()))}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(veth); err != nil {
			return err
		}
		// IPv6 answers neighbour solicitations only for addresses of the
		// receiving link, so the node's IPv6 address lives on this link.
		addr, _ := netlink.ParseAddr(nodeAddr6 + "/128")
		addr.Flags |= 0x02 // IFA_F_NODAD
		if err := netlink.AddrAdd(veth, addr); err != nil {
			return err
		}
		for _, a := range []string{extLink4 + "/32", extLink6 + "/128"} {
			dst, _ := netlink.ParseIPNet(a)
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: veth.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
				return err
			}
		}
		for _, a := range extAddrs {
			dst, _ := netlink.ParseIPNet(hostCIDR(a))
			gw := net.ParseIP(extLink4)
			if strings.Contains(a, ":") {
				gw = net.ParseIP(extLink6)
			}
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: veth.Attrs().Index, Dst: dst, Gw: gw}); err != nil {
				return fmt.Errorf("route %s: %w", a, err)
			}
		}
		return writeProc("net/ipv4/ip_forward", "1")
	})
	if err != nil {
		t.Fatalf("node side of external link: %v", err)
	}
	err = c.ext.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName("up0")
		if err != nil {
			return err
		}
		for _, a := range append([]string{extLink4, extLink6}, extAddrs...) {
			addr, _ := netlink.ParseAddr(hostCIDR(a))
			addr.Flags |= 0x02 // IFA_F_NODAD
			if err := netlink.AddrAdd(l, addr); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
		for _, a := range []string{nodeAddr4, nodeAddr6} {
			dst, _ := netlink.ParseIPNet(hostCIDR(a))
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
				return err
			}
		}
		for _, def := range []struct{ dst, gw string }{{"0.0.0.0/0", nodeAddr4}, {"::/0", nodeAddr6}} {
			dst, _ := netlink.ParseIPNet(def.dst)
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: net.ParseIP(def.gw)}); err != nil {
				return fmt.Errorf("default via %s: %w", def.gw, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("external side: %v", err)
	}
	c.pinNeighbours()
}

// pinNeighbours installs permanent neighbour entries on both ends of the
// external link, so the first probe never waits on ARP or NDP.
func (c *cluster) pinNeighbours() {
	mac := func(n ns.NetNS, name string) (net.HardwareAddr, int) {
		var hw net.HardwareAddr
		var idx int
		_ = n.Do(func(ns.NetNS) error {
			l, err := netlink.LinkByName(name)
			if err == nil {
				hw, idx = l.Attrs().HardwareAddr, l.Attrs().Index
			}
			return err
		})
		return hw, idx
	}
	nodeMAC, nodeIdx := mac(c.node, "ext0")
	extMAC, extIdx := mac(c.ext, "up0")
	pin := func(n ns.NetNS, idx int, hw net.HardwareAddr, ips ...string) {
		err := n.Do(func(ns.NetNS) error {
			for _, ip := range ips {
				a := net.ParseIP(ip)
				fam := netlink.FAMILY_V4
				if a.To4() == nil {
					fam = netlink.FAMILY_V6
				}
				if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: fam, State: netlink.NUD_PERMANENT, IP: a, HardwareAddr: hw}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			c.t.Fatalf("pin neighbours: %v", err)
		}
	}
	pin(c.node, nodeIdx, extMAC, extLink4, extLink6)
	pin(c.ext, extIdx, nodeMAC, nodeAddr4, nodeAddr6)
}

func hostCIDR(a string) string {
	if strings.Contains(a, ":") {
		return a + "/128"
	}
	return a + "/32"
}

func writeProc(key, val string) error {
	return os.WriteFile("/proc/sys/"+key, []byte(val), 0o644)
}

// netconf is the node's CNI config: two IPv4 ranges and one IPv6 range.
func (c *cluster) netconf() []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"type":"weir",%s
		"agentSocket":%q,
		"ipam":{"ranges":[{"subnet":"172.17.0.0/24"},{"subnet":"172.17.1.0/24"},{"subnet":"fd00:17::/64"}],"dataDir":%q}}`,
		policyNet, c.pluginExtra, c.sock, filepath.Join(c.dir, "ipam")))
}

// addPod wires p with the plugin (asking for its addresses) and starts echo
// servers on every probe port.
func (c *cluster) addPod(p *tpod) {
	t := c.t
	p.netns = testkit.NewTestNS(t, "weirpp")
	out, err := p.addCall(c.netconf()).Exec(context.Background(), c.node, weirBin())
	if err != nil || out.Err != nil {
		t.Fatalf("ADD %s/%s: %v %v", p.ns, p.name, err, out.Err)
	}
	testkit.ServeEcho(t, p.netns, probePorts...)
	c.pods[p.ns+"/"+p.name] = p
}

// writeBase writes the node, namespaces and pods as manifests.
func (c *cluster) writeBase() {
	var docs []string
	docs = append(docs, fmt.Sprintf(`{"apiVersion":"v1","kind":"Node","metadata":{"name":%q},
		"spec":{"podCIDRs":["172.17.0.0/24","fd00:17::/64"]},
		"status":{"addresses":[{"type":"InternalIP","address":%q},{"type":"InternalIP","address":%q}]}}`, nodeName, nodeAddr4, nodeAddr6))
	for name, l := range c.nsLbls {
		b, _ := json.Marshal(l)
		docs = append(docs, fmt.Sprintf(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":%q,"labels":%s}}`, name, b))
	}
	for _, p := range c.pods {
		l, _ := json.Marshal(p.labels)
		var ports, ips []string
		for _, cp := range p.ports {
			ports = append(ports, fmt.Sprintf(`{"name":%q,"protocol":%q,"containerPort":%d}`, cp.name, cp.proto, cp.port))
		}
		for _, ip := range p.ips {
			ips = append(ips, fmt.Sprintf(`{"ip":%q}`, ip))
		}
		docs = append(docs, fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":%q,"name":%q,"labels":%s},
			"spec":{"nodeName":%q,"containers":[{"name":"c","image":"x","ports":[%s]}]},
			"status":{"phase":"Running","podIPs":[%s]}}`, p.ns, p.name, l, nodeName, strings.Join(ports, ","), strings.Join(ips, ",")))
	}
	c.writeManifest("base.json", `{"apiVersion":"v1","kind":"List","items":[`+strings.Join(docs, ",")+`]}`)
}

// writeManifest replaces one manifest file atomically.
func (c *cluster) writeManifest(name, body string) {
	dir := filepath.Join(c.dir, "manifests")
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) startAgent() {
	t := c.t
	logPath := filepath.Join(c.dir, "agent.log")
	c.spawnAgent()
	t.Cleanup(func() {
		c.stopAgent()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("agent log:\n%s", b)
		}
	})
	c.waitSynced(0)
}

// spawnAgent starts weir-agent inside the node namespace, appending to
// the agent log; it does not wait for a sync.
func (c *cluster) spawnAgent() {
	t := c.t
	c.agent = exec.Command(weirAgentBin(t), "--node-name", nodeName, "--manifests", filepath.Join(c.dir, "manifests"),
		"--socket", c.sock, "--cluster-cidr", "172.17.0.0/23,fd00:17::/64", "--manifests-poll", "50ms")
	if c.backend != "" {
		c.agent.Args = append(c.agent.Args, "--backend", c.backend)
	}
	c.agent.Args = append(c.agent.Args, c.agentArgs...)
	if c.noNFTables {
		if err := testkit.WithoutNFTables(c.agent); err != nil {
			t.Fatal(err)
		}
	}
	logf, err := os.OpenFile(filepath.Join(c.dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c.agent.Stdout, c.agent.Stderr = logf, logf
	if err := testkit.StartIn(c.node, c.agent); err != nil {
		t.Fatal(err)
	}
}

// stopAgent kills the agent with SIGKILL, as a crash would.
func (c *cluster) stopAgent() {
	if c.agent != nil && c.agent.Process != nil {
		_ = c.agent.Process.Kill()
		_ = c.agent.Wait()
	}
}

func (c *cluster) status() (testkit.AgentStatus, error) {
	return testkit.Status(context.Background(), c.sock)
}

// waitSynced waits until the agent has synced more than after times.
func (c *cluster) waitSynced(after int) testkit.AgentStatus {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := c.status()
		if err == nil && st.Synced && st.Syncs > after {
			return st
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("agent did not sync (status %+v, err %v)", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// setPolicies replaces the policy manifest and waits for the agent to
// apply it.
func (c *cluster) setPolicies(yaml string) testkit.AgentStatus {
	c.t.Helper()
	before, err := c.status()
	if err != nil {
		c.t.Fatal(err)
	}
	c.writeManifest("policies.yaml", yaml)
	return c.waitSynced(before.Syncs)
}
