//go:build integration

package policy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/weir-cni/weir/examples"
	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/nft"
	"github.com/weir-cni/weir/ruleset"
)

// probeTimeout bounds a denied probe: a dropped SYN or datagram just times out.
const probeTimeout = 400 * time.Millisecond

// kernelPolicies is the talk's two policies plus a UDP one, for pods wired
// below: node namespace with one routed veth per pod namespace.
var kernelPolicies = examples.TalkPolicies + `
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns-only, namespace: prod}
spec:
  podSelector: {matchLabels: {app: dns}}
  ingress: [{ports: [{protocol: UDP, port: 53}]}]
---
# Many ports (more than maxInlinePorts: the ports set) from many selector
# peers (one union group), dual-stack.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: wide, namespace: other}
spec:
  podSelector: {matchLabels: {app: wide}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {purpose: production}}
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}
      podSelector: {matchLabels: {app: web}}
    - podSelector: {matchLabels: {app: nobody1}}
    - podSelector: {matchLabels: {app: nobody2}}
    ports:
    - port: 80
    - port: 443
    - {port: 8080, endPort: 8090}
    - {protocol: UDP, port: 53}
    - {protocol: UDP, port: 5353}
    - {protocol: SCTP, port: 9000}
`

type kpod struct {
	pod   Pod
	addr  string // address/prefix inside the pod namespace
	gw    string // node side address of its veth
	addr6 string // optional IPv6 address/prefix, gateway ::1 of it
	gw6   string
	netns *testkit.NS
}

// TestKernelAgreesWithTrace wires pods around a node namespace, applies the
// compiled ruleset there through netlink, and checks that real TCP and UDP
// probes are allowed or dropped exactly as Trace says, and as expected.
func TestKernelAgreesWithTrace(t *testing.T) {
	n := routerNS(t, "weirt-pol-")
	node, nodePath := n.Name, n.Path()
	pods := []*kpod{
		{pod: Pod{Namespace: "default", Name: "web", Labels: map[string]string{"app": "web"}}, addr: "10.0.0.10/24", gw: "10.0.0.1/24",
			addr6: "fd00:0::10/64", gw6: "fd00:0::1/64"},
		{pod: Pod{Namespace: "default", Name: "db", Labels: map[string]string{"role": "db"}}, addr: "10.0.2.20/24", gw: "10.0.2.1/24"},
		{pod: Pod{Namespace: "default", Name: "frontend", Labels: map[string]string{"role": "frontend"}}, addr: "10.0.3.10/24", gw: "10.0.3.1/24"},
		{pod: Pod{Namespace: "prod", Name: "client"}, addr: "10.0.4.10/24", gw: "10.0.4.1/24",
			addr6: "fd00:4::10/64", gw6: "fd00:4::1/64"},
		{pod: Pod{Namespace: "prod", Name: "dns", Labels: map[string]string{"app": "dns"}}, addr: "10.0.5.10/24", gw: "10.0.5.1/24"},
		{pod: Pod{Namespace: "other", Name: "x"}, addr: "10.0.6.10/24", gw: "10.0.6.1/24",
			addr6: "fd00:6::10/64", gw6: "fd00:6::1/64"},
		{pod: Pod{Namespace: "other", Name: "wide", Labels: map[string]string{"app": "wide"}}, addr: "10.0.7.10/24", gw: "10.0.7.1/24",
			addr6: "fd00:7::10/64", gw6: "fd00:7::1/64"},
		{pod: Pod{Namespace: "ext", Name: "allowed-host"}, addr: "172.17.0.5/24", gw: "172.17.0.1/24"},
		{pod: Pod{Namespace: "ext", Name: "excepted-host"}, addr: "172.17.1.5/24", gw: "172.17.1.1/24"},
	}
	snap := Snapshot{
		Node: Node{Name: "n1", Addrs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}},
		Namespaces: []Namespace{{Name: "default"}, {Name: "prod", Labels: map[string]string{"purpose": "production"}},
			{Name: "other"}},
	}
	snap.Pods = wireAll(t, node, pods)
	snap.Policies = fixtures.Policies(t, kernelPolicies)
	r := Compile(snap)
	a := applyIn(t, nodePath, r)
	by := byName(pods)
	cases := []struct {
		from, to string
		proto    string
		port     int
		want     ruleset.VerdictKind
		v6       bool
	}{
		{"client", "web", "tcp", 80, ruleset.VerdictAccept, true},             // IPv6, production namespace
		{"x", "web", "tcp", 80, ruleset.VerdictDrop, true},                    // IPv6, other namespace
		{"web", "x", "udp", 53, ruleset.VerdictAccept, true},                  // IPv6, unisolated
		{"client", "web", "tcp", 80, ruleset.VerdictAccept, false},            // production namespace
		{"x", "web", "tcp", 80, ruleset.VerdictDrop, false},                   // other namespace
		{"frontend", "web", "tcp", 80, ruleset.VerdictDrop, false},            // same namespace, not production
		{"frontend", "db", "tcp", 6379, ruleset.VerdictAccept, false},         // podSelector role=frontend
		{"frontend", "db", "tcp", 6380, ruleset.VerdictDrop, false},           // wrong port
		{"allowed-host", "db", "tcp", 6379, ruleset.VerdictAccept, false},     // ipBlock
		{"excepted-host", "db", "tcp", 6379, ruleset.VerdictDrop, false},      // except
		{"db", "web", "tcp", 5978, ruleset.VerdictDrop, false},                // db egress ok, web ingress denies
		{"db", "frontend", "tcp", 5978, ruleset.VerdictDrop, false},           // egress outside 10.0.0.0/24
		{"db", "x", "tcp", 80, ruleset.VerdictDrop, false},                    // egress isolated
		{"x", "dns", "udp", 53, ruleset.VerdictAccept, false},                 // UDP port
		{"x", "dns", "udp", 54, ruleset.VerdictDrop, false},                   // other UDP port
		{"x", "dns", "tcp", 53, ruleset.VerdictDrop, false},                   // TCP not allowed
		{"web", "frontend", "udp", 9999, ruleset.VerdictAccept, false},        // unisolated destination
		{"allowed-host", "frontend", "tcp", 80, ruleset.VerdictAccept, false}, // from outside to unisolated pod
		// One rule, six port ranges (the ports set) × four selector peers
		// (one union group).
		{"client", "wide", "tcp", 8085, ruleset.VerdictAccept, false}, // namespace peer, port range
		{"client", "wide", "tcp", 8085, ruleset.VerdictAccept, true},
		{"web", "wide", "tcp", 443, ruleset.VerdictAccept, false}, // namespace AND pod peer
		{"web", "wide", "tcp", 443, ruleset.VerdictAccept, true},
		{"client", "wide", "udp", 5353, ruleset.VerdictAccept, false}, // UDP port of the set
		{"client", "wide", "udp", 5353, ruleset.VerdictAccept, true},
		{"client", "wide", "tcp", 81, ruleset.VerdictDrop, false}, // peer, wrong port
		{"client", "wide", "tcp", 8091, ruleset.VerdictDrop, true},
		{"client", "wide", "udp", 80, ruleset.VerdictDrop, false}, // TCP port, UDP packet
		{"x", "wide", "tcp", 80, ruleset.VerdictDrop, false},      // wrong peer, allowed port
		{"x", "wide", "tcp", 8080, ruleset.VerdictDrop, true},
		{"frontend", "wide", "tcp", 80, ruleset.VerdictDrop, false}, // default namespace, not app=web
	}
	counted := map[string]bool{} // the counters of the rules that decided
	for _, tc := range cases {
		name := fmt.Sprintf("%s to %s %s/%d v6=%v", tc.from, tc.to, tc.proto, tc.port, tc.v6)
		t.Run(name, func(t *testing.T) {
			src, dst := by[tc.from], by[tc.to]
			fam := 0
			if tc.v6 {
				fam = 1
			}
			proto, _ := ruleset.ProtoNumber(tc.proto)
			pkt := ruleset.Packet{Src: src.pod.IPs[fam], Dst: dst.pod.IPs[fam], Proto: proto, DPort: uint16(tc.port)}
			traceAndProbe(t, r, src, dst, pkt, tc.proto, tc.want, counted)
		})
	}
	// Every rule that decided a probe counted it; no other counter moved.
	values, err := a.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Counters {
		name := c.Name
		v, ok := values[name]
		switch {
		case !ok:
			t.Errorf("counter %s is not in the kernel", name)
		case counted[name] && v.Packets == 0:
			t.Errorf("counter %s counted nothing, but decided a probe", name)
		case !counted[name] && v.Packets != 0:
			t.Errorf("counter %s counted %d packets, but decided no probe", name, v.Packets)
		}
	}
	if len(counted) < 3 {
		t.Errorf("only %d counters decided probes: %v", len(counted), counted)
	}
}

// TestKernelIsolatesSinglePolicyPods pins the isolation of pods one policy
// selects, whose pod map elements jump straight to that policy's chain: what
// the policy does not allow, the base chain drops (denied-ingress,
// denied-egress), dual-stack, and a pod two policies select is isolated
// by its selection chain the same way.
func TestKernelIsolatesSinglePolicyPods(t *testing.T) {
	n := routerNS(t, "weirt-pol-")
	pods := []*kpod{
		{pod: Pod{Namespace: "default", Name: "client", Labels: map[string]string{"app": "client"}},
			addr: "10.0.1.10/24", gw: "10.0.1.1/24", addr6: "fd00:1::10/64", gw6: "fd00:1::1/64"},
		{pod: Pod{Namespace: "default", Name: "web", Labels: map[string]string{"app": "web"}},
			addr: "10.0.2.10/24", gw: "10.0.2.1/24", addr6: "fd00:2::10/64", gw6: "fd00:2::1/64"},
		{pod: Pod{Namespace: "default", Name: "api", Labels: map[string]string{"app": "api", "tier": "back"}},
			addr: "10.0.3.10/24", gw: "10.0.3.1/24"},
		{pod: Pod{Namespace: "default", Name: "other"}, addr: "10.0.4.10/24", gw: "10.0.4.1/24"},
	}
	snap := Snapshot{Node: Node{Name: "n1"}, Namespaces: []Namespace{{Name: "default"}}}
	snap.Pods = wireAll(t, n.Name, pods)
	snap.Policies = fixtures.Policies(t, `
{metadata: {name: web-in, namespace: default}, spec: {podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 80}]}]}}
---
{metadata: {name: client-eg, namespace: default}, spec: {podSelector: {matchLabels: {app: client}}, policyTypes: [Egress],
  egress: [{ports: [{port: 80}, {port: 82}]}]}}
---
{metadata: {name: api-80, namespace: default}, spec: {podSelector: {matchLabels: {app: api}}, ingress: [{ports: [{port: 80}]}]}}
---
{metadata: {name: back-81, namespace: default}, spec: {podSelector: {matchLabels: {tier: back}}, ingress: [{ports: [{port: 81}]}]}}
`)
	r := Compile(snap)
	sels := 0
	for _, c := range r.Chains {
		if strings.HasPrefix(c.Name, prefixSelection) {
			sels++
		}
	}
	if sels != 1 {
		t.Fatalf("%d selection chains, want 1 (api's): the pods one policy selects need none", sels)
	}
	a := applyIn(t, n.Path(), r)
	by := byName(pods)
	cases := []struct {
		from, to string
		port     int
		want     ruleset.VerdictKind
		v6       bool
	}{
		{"client", "web", 80, ruleset.VerdictAccept, false},
		{"client", "web", 80, ruleset.VerdictAccept, true},
		{"client", "web", 82, ruleset.VerdictDrop, false}, // egress allows, web's ingress does not
		{"client", "web", 82, ruleset.VerdictDrop, true},
		{"other", "web", 81, ruleset.VerdictDrop, false},
		{"client", "other", 81, ruleset.VerdictDrop, false}, // client's egress does not allow
		{"client", "other", 82, ruleset.VerdictAccept, false},
		{"other", "api", 80, ruleset.VerdictAccept, false}, // two policies: each allows its port
		{"other", "api", 81, ruleset.VerdictAccept, false},
		{"other", "api", 82, ruleset.VerdictDrop, false},
		{"web", "other", 81, ruleset.VerdictAccept, false}, // web is not egress-isolated
	}
	counted := map[string]bool{}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s to %s tcp/%d v6=%v", tc.from, tc.to, tc.port, tc.v6), func(t *testing.T) {
			src, dst := by[tc.from], by[tc.to]
			fam := 0
			if tc.v6 {
				fam = 1
			}
			pkt := ruleset.Packet{Src: src.pod.IPs[fam], Dst: dst.pod.IPs[fam], Proto: 6, DPort: uint16(tc.port)}
			traceAndProbe(t, r, src, dst, pkt, "tcp", tc.want, counted)
		})
	}
	values, err := a.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{counterDeniedIn, counterDeniedEg} {
		if !counted[name] || values[name].Packets == 0 {
			t.Errorf("counter %s: decided a probe %v, counted %d packets; want both", name, counted[name], values[name].Packets)
		}
	}
}

// TestCountersSurvivePolicyEdit pins that editing a policy keeps the
// counters of its rules on the kernel: Apply replaces the policy's chain
// but not the named counters its rules count into. (ApplyFull in place of
// the second Apply fails this test: it deletes and re-creates the table,
// so every counter restarts from zero.)
func TestCountersSurvivePolicyEdit(t *testing.T) {
	n := testkit.NewTestNS(t, "weirt-pol-")
	node, nodePath := n.Name, n.Path()
	testkit.Run(t, "ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	client := &kpod{pod: Pod{Namespace: "default", Name: "client"}, addr: "10.0.1.10/24", gw: "10.0.1.1/24"}
	web := &kpod{pod: Pod{Namespace: "default", Name: "web", Labels: map[string]string{"app": "web"}},
		addr: "10.0.2.10/24", gw: "10.0.2.1/24"}
	snap := Snapshot{Node: Node{Name: "n1"}, Namespaces: []Namespace{{Name: "default"}}}
	for i, p := range []*kpod{client, web} {
		p.netns = testkit.NewTestNS(t, "weirt-pod-")
		wire(t, node, p, i)
		p.pod.Node = "n1"
		p.pod.IPs = []netip.Addr{netip.MustParsePrefix(p.addr).Addr()}
		snap.Pods = append(snap.Pods, p.pod)
	}
	policy := func(ports string) *networkingv1.NetworkPolicy {
		return fixtures.Policy(t, `{metadata: {name: web, namespace: default}, spec: {podSelector: {matchLabels: {app: web}}, ingress: [{ports: `+ports+`}]}}`)
	}
	snap.Policies = []*networkingv1.NetworkPolicy{policy(`[{port: 80}]`)}
	a, err := nft.NewNetlinkApplier(nodePath)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Apply(context.Background(), Compile(snap)); err != nil {
		t.Fatal(err)
	}
	to := web.pod.IPs[0]
	if got := probe(t, client, web, to, "tcp", 80); got != ruleset.VerdictAccept {
		t.Fatalf("probe to port 80 before the edit: %v", got)
	}
	counter := policyCounterName(dirIngress, ruleset.Hash8("default/web"), "default/web", 0)
	before, err := a.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if before[counter].Packets == 0 {
		t.Fatalf("counter %s counted nothing before the edit: %v", counter, before)
	}
	snap.Policies = []*networkingv1.NetworkPolicy{policy(`[{port: 80}, {port: 81}]`)}
	if _, err := a.Apply(context.Background(), Compile(snap)); err != nil {
		t.Fatal(err)
	}
	after, err := a.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, was := after[counter].Packets, before[counter].Packets; got < was {
		t.Errorf("counter %s restarted across the edit: %d packets, %d before", counter, got, was)
	}
	if got := probe(t, client, web, to, "tcp", 81); got != ruleset.VerdictAccept { // the edit reached the kernel
		t.Errorf("probe to port 81 after the edit: %v", got)
	}
	// A full replacement (the agent's first sync, a rejected transaction's
	// fallback) creates every counter again: the README says so.
	if err := a.ApplyFull(context.Background(), Compile(snap)); err != nil {
		t.Fatal(err)
	}
	full, err := a.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := full[counter].Packets; got != 0 {
		t.Errorf("counter %s holds %d packets after a full replacement, want 0", counter, got)
	}
}

// traceAndProbe checks that Trace and a real probe from src to dst both
// give want for pkt (whose destination port is probed over proto), and
// records in counted the counters of the rules that decided.
func traceAndProbe(t *testing.T, r ruleset.Ruleset, src, dst *kpod, pkt ruleset.Packet, proto string, want ruleset.VerdictKind, counted map[string]bool) {
	t.Helper()
	traced, steps := ruleset.Trace(r, pkt)
	for _, s := range steps {
		if s.Rule.Counter != "" {
			counted[s.Rule.Counter] = true
		}
	}
	if traced != want {
		t.Errorf("trace says %v, want %v\n%s", traced, want, ruleset.JoinSteps(steps, "\n"))
	}
	if got := probe(t, src, dst, pkt.Dst, proto, int(pkt.DPort)); got != want {
		t.Errorf("kernel says %v, want %v; trace:\n%s", got, want, ruleset.JoinSteps(steps, "\n"))
	}
}

// applyIn applies r in the namespace at path through a new applier,
// closed when the test ends.
func applyIn(t *testing.T, path string, r ruleset.Ruleset) *nft.NetlinkApplier {
	t.Helper()
	a, err := nft.NewNetlinkApplier(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	if _, err := a.Apply(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return a
}

// byName indexes pods by name.
func byName(pods []*kpod) map[string]*kpod {
	by := map[string]*kpod{}
	for _, p := range pods {
		by[p.pod.Name] = p
	}
	return by
}

// routerNS is a fresh node namespace that forwards IPv4 and IPv6.
func routerNS(t *testing.T, prefix string) *testkit.NS {
	n := testkit.NewTestNS(t, prefix)
	testkit.Run(t, "ip", "netns", "exec", n.Name, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv6.conf.default.accept_dad=0")
	return n
}

// wireAll gives each of pods a namespace wired to node (see wire), on node
// n1, and returns them as the snapshot's pods: all but those of namespace
// "ext", which stand for hosts outside the cluster.
func wireAll(t *testing.T, node string, pods []*kpod) []Pod {
	var out []Pod
	for i, p := range pods {
		p.netns = testkit.NewTestNS(t, "weirt-pod-")
		wire(t, node, p, i)
		p.pod.Node = "n1"
		p.pod.IPs = []netip.Addr{netip.MustParsePrefix(p.addr).Addr()}
		if p.addr6 != "" {
			p.pod.IPs = append(p.pod.IPs, netip.MustParsePrefix(p.addr6).Addr())
		}
		if p.pod.Namespace != "ext" {
			out = append(out, p.pod)
		}
	}
	return out
}

// wire links a pod namespace to the node namespace with a veth: the node
// side is the pod's gateway, so every pod-to-pod packet is forwarded.
func wire(t *testing.T, node string, p *kpod, i int) {
	// No duplicate address detection: a tentative link-local address would
	// stall neighbour discovery for the first IPv6 probes.
	testkit.Run(t, "ip", "netns", "exec", p.netns.Name, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
	host := fmt.Sprintf("veth%d", i)
	testkit.Run(t, "ip", "-n", node, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", p.netns.Name)
	testkit.Run(t, "ip", "-n", node, "addr", "add", p.gw, "dev", host)
	testkit.Run(t, "ip", "-n", node, "link", "set", host, "up")
	testkit.Run(t, "ip", "-n", p.netns.Name, "addr", "add", p.addr, "dev", "eth0")
	testkit.Run(t, "ip", "-n", p.netns.Name, "link", "set", "eth0", "up")
	testkit.Run(t, "ip", "-n", p.netns.Name, "link", "set", "lo", "up")
	testkit.Run(t, "ip", "-n", p.netns.Name, "route", "add", "default", "via", strings.Split(p.gw, "/")[0])
	if p.addr6 != "" {
		testkit.Run(t, "ip", "-n", node, "addr", "add", p.gw6, "dev", host, "nodad")
		testkit.Run(t, "ip", "-n", p.netns.Name, "addr", "add", p.addr6, "dev", "eth0", "nodad")
		testkit.Run(t, "ip", "-n", p.netns.Name, "-6", "route", "add", "default", "via", strings.Split(p.gw6, "/")[0])
	}
}

// probe serves an echo on port in dst and reports whether a TCP or UDP
// exchange from src to it got through.
func probe(t *testing.T, src, dst *kpod, to netip.Addr, proto string, port int) ruleset.VerdictKind {
	t.Helper()
	e, err := testkit.StartEcho(dst.netns, port)
	if err != nil {
		t.Fatalf("serve port %d in %s: %v", port, dst.netns.Name, err)
	}
	defer e.Close()
	if testkit.Exchange(src.netns, netip.Addr{}, to, proto, port, probeTimeout) != nil {
		return ruleset.VerdictDrop
	}
	return ruleset.VerdictAccept
}
