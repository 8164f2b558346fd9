//go:build integration

package iptables

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/examples"
	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/nft"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// Hosts of the kernel test, all wired to one node namespace. ext-ok and
// ext-except are not pods: they sit inside and inside the except of the
// talk's ipBlock 172.17.0.0/16 except 172.17.1.0/24.
var kernelHosts = []struct {
	key, ns, name string
	labels        map[string]string
	ips           []string
}{
	{"web", "default", "web", map[string]string{"app": "web"}, []string{"10.0.0.10", "fd00:10::10"}},
	{"db", "default", "db", map[string]string{"role": "db"}, []string{"10.0.0.20", "fd00:10::20"}},
	{"frontend", "default", "frontend", map[string]string{"role": "frontend"}, []string{"10.0.0.40", "fd00:10::40"}},
	{"prod", "prod", "client", map[string]string{"app": "client"}, []string{"10.0.0.50", "fd00:10::50"}},
	{"dev", "dev", "client", map[string]string{"app": "client"}, []string{"10.0.0.30", "fd00:10::30"}},
	{"ext-ok", "", "", nil, []string{"172.17.0.9"}},
	{"ext-except", "", "", nil, []string{"172.17.1.9"}},
}

var kernelPorts = []int{53, 80, 5978, 6379, 6380}

// kernelNodeAddr is the node's own address, on the node namespace's
// loopback: the "node" host of the probes.
const kernelNodeAddr = "192.168.1.10"

// kernelSnapshot is the snapshot of the kernel test's hosts and policies,
// YAML documents of NetworkPolicies.
func kernelSnapshot(t testing.TB, policies string) policy.Snapshot {
	t.Helper()
	node := []netip.Addr{netip.MustParseAddr(kernelNodeAddr)}
	s := policy.Snapshot{
		Node: policy.Node{Name: "n1", Addrs: node,
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00:10::/64")}},
		Nodes: []policy.PeerNode{{Name: "n1", Labels: map[string]string{"role": "worker"}, Addrs: node}},
		Namespaces: []policy.Namespace{
			{Name: "default", Labels: map[string]string{"project": "myproject"}},
			{Name: "prod", Labels: map[string]string{"purpose": "production"}},
			{Name: "dev", Labels: map[string]string{"purpose": "development"}},
		},
	}
	for _, h := range kernelHosts {
		if h.ns == "" {
			continue
		}
		p := policy.Pod{Namespace: h.ns, Name: h.name, Node: "n1", Labels: h.labels}
		for _, ip := range h.ips {
			p.IPs = append(p.IPs, netip.MustParseAddr(ip))
		}
		s.Pods = append(s.Pods, p)
	}
	s.Policies = fixtures.Policies(t, policies)
	return s
}

// kernelScenario is one step of TestBackendsGiveSameVerdicts: policies and
// the probes they must allow or drop.
type kernelScenario struct {
	name string
	// policies are NetworkPolicies as YAML documents.
	policies string
	// scenario, when set, is a scenario file whose NetworkPolicies,
	// ClusterNetworkPolicies and denied-packet logging are applied to the
	// kernel test's hosts.
	scenario string
	probes   []testkit.Probe
}

// snapshot is the snapshot of the kernel test's hosts and sc's policies.
func (sc kernelScenario) snapshot(t testing.TB) policy.Snapshot {
	s := kernelSnapshot(t, sc.policies)
	if sc.scenario != "" {
		f := loadScenario(t, sc.scenario).Snapshot
		s.Policies, s.ClusterPolicies, s.LogDenied = f.Policies, f.ClusterPolicies, f.LogDenied
	}
	return s
}

// kernelScenarios run in order on the same namespaces, so each Apply also
// replaces the previous scenario's ruleset.
var kernelScenarios = []kernelScenario{
	{name: "no policy allows everything", probes: []testkit.Probe{
		{From: "dev", To: "web", Proto: "tcp", Port: 80, Want: true},
		{From: "dev", To: "web", V6: true, Proto: "udp", Port: 53, Want: true},
		{From: "ext-except", To: "db", Proto: "tcp", Port: 6379, Want: true},
	}},
	{name: "deny-all ingress in default", policies: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: default, name: deny-all}
spec: {podSelector: {}}
`, probes: []testkit.Probe{
		{From: "dev", To: "web", Proto: "tcp", Port: 80, Want: false},
		{From: "prod", To: "db", V6: true, Proto: "tcp", Port: 6379, Want: false},
		{From: "frontend", To: "db", Proto: "udp", Port: 53, Want: false},
		{From: "web", To: "dev", Proto: "tcp", Port: 80, Want: true},
		{From: "db", To: "prod", V6: true, Proto: "udp", Port: 53, Want: true},
	}},
	{name: "the talk's policies", policies: examples.TalkPolicies, probes: []testkit.Probe{
		{From: "prod", To: "web", Proto: "tcp", Port: 80, Want: true},
		{From: "prod", To: "web", V6: true, Proto: "udp", Port: 53, Want: true},
		{From: "dev", To: "web", Proto: "tcp", Port: 80, Want: false},
		{From: "frontend", To: "db", Proto: "tcp", Port: 6379, Want: true},
		{From: "frontend", To: "db", V6: true, Proto: "tcp", Port: 6379, Want: true},
		{From: "frontend", To: "db", Proto: "tcp", Port: 6380, Want: false},
		{From: "frontend", To: "db", Proto: "udp", Port: 6379, Want: false},
		{From: "ext-ok", To: "db", Proto: "tcp", Port: 6379, Want: true},
		{From: "ext-except", To: "db", Proto: "tcp", Port: 6379, Want: false},
		{From: "dev", To: "db", Proto: "tcp", Port: 6379, Want: false},
		{From: "db", To: "dev", Proto: "tcp", Port: 5978, Want: true},
		{From: "db", To: "dev", Proto: "tcp", Port: 80, Want: false},
		{From: "db", To: "ext-ok", Proto: "tcp", Port: 5978, Want: false},
		{From: "db", To: "dev", V6: true, Proto: "tcp", Port: 5978, Want: false},
	}},
	{name: "egress restricted to udp 53 of db", policies: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: dev, name: dns-only}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {project: myproject}}, podSelector: {matchLabels: {role: db}}}]
    ports: [{protocol: UDP, port: 53}]
`, probes: []testkit.Probe{
		{From: "dev", To: "db", Proto: "udp", Port: 53, Want: true},
		{From: "dev", To: "db", V6: true, Proto: "udp", Port: 53, Want: true},
		{From: "dev", To: "db", Proto: "tcp", Port: 53, Want: false},
		{From: "dev", To: "web", Proto: "udp", Port: 53, Want: false},
		{From: "dev", To: "ext-ok", Proto: "udp", Port: 53, Want: false},
		{From: "web", To: "dev", Proto: "tcp", Port: 80, Want: true},
	}},
	{name: "cluster network policy tiers", scenario: "testdata/tiers-dualstack.yaml", probes: []testkit.Probe{
		{From: "dev", To: "web", Proto: "tcp", Port: 80, Want: false}, // Admin Deny over a NetworkPolicy allow
		{From: "dev", To: "web", V6: true, Proto: "tcp", Port: 80, Want: false},
		{From: "dev", To: "web", Proto: "udp", Port: 53, Want: true},   // the NetworkPolicy allows the rest
		{From: "prod", To: "db", Proto: "tcp", Port: 6379, Want: true}, // Admin Pass to a NetworkPolicy allow
		{From: "prod", To: "db", V6: true, Proto: "tcp", Port: 6379, Want: true},
		{From: "prod", To: "db", Proto: "tcp", Port: 80, Want: false},       // Admin Pass to a NetworkPolicy deny
		{From: "dev", To: "db", Proto: "tcp", Port: 6379, Want: false},      // the same Pass peer, not allowed by it
		{From: "frontend", To: "db", Proto: "tcp", Port: 6379, Want: false}, // Admin Deny after the Pass rule
		{From: "dev", To: "frontend", Proto: "tcp", Port: 5978, Want: true}, // Baseline Accept before Baseline Deny
		{From: "dev", To: "frontend", Proto: "tcp", Port: 80, Want: false},  // Baseline Deny: no NetworkPolicy selects
		{From: "dev", To: "frontend", V6: true, Proto: "udp", Port: 53, Want: false},
		{From: "web", To: "frontend", Proto: "tcp", Port: 80, Want: true}, // Baseline lets other peers through
		{From: "dev", To: "prod", Proto: "tcp", Port: 5978, Want: false},  // Baseline Accept under a default deny
		{From: "dev", To: "node", Proto: "tcp", Port: 10250, Want: false}, // Admin egress Deny to its node (INPUT)
		{From: "dev", To: "node", Proto: "tcp", Port: 80, Want: true},     // its node's other ports
		{From: "web", To: "node", Proto: "tcp", Port: 10250, Want: true},  // pods the policy does not hold
		{From: "dev", To: "ext-ok", Proto: "tcp", Port: 80, Want: true},   // Admin egress Accept to a network
	}},
	{name: "cluster network policy deny rules logged", scenario: loggedScenario, probes: []testkit.Probe{
		{From: "frontend", To: "web", Proto: "tcp", Port: 80, Want: false}, // Admin Deny of a one-pod peer
		{From: "frontend", To: "web", V6: true, Proto: "udp", Port: 53, Want: false},
		{From: "prod", To: "db", Proto: "tcp", Port: 6379, Want: true},      // Admin Pass to a NetworkPolicy allow
		{From: "frontend", To: "db", Proto: "tcp", Port: 6379, Want: false}, // Admin Deny of every pod after the Pass
		{From: "frontend", To: "db", V6: true, Proto: "udp", Port: 6379, Want: false},
		{From: "dev", To: "db", Proto: "tcp", Port: 80, Want: false},      // Pass, then NetworkPolicy isolation
		{From: "dev", To: "web", Proto: "tcp", Port: 80, Want: false},     // Baseline Deny
		{From: "prod", To: "web", Proto: "tcp", Port: 80, Want: true},     // Baseline lets other peers through
		{From: "dev", To: "node", Proto: "udp", Port: 10250, Want: false}, // Admin egress Deny to its node (INPUT)
		{From: "dev", To: "node", Proto: "tcp", Port: 80, Want: true},
		{From: "web", To: "prod", Proto: "tcp", Port: 80, Want: false}, // NetworkPolicy isolation
	}},
	{name: "one rule of many ports and many peers", policies: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: default, name: wide}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {purpose: production}}
    - podSelector: {matchLabels: {role: frontend}}
    - podSelector: {matchLabels: {app: nobody}}
    - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}
    ports:
    - {protocol: UDP, port: 53}
    - port: 80
    - port: 5978
    - port: 6379
    - {port: 8000, endPort: 8010}
    - {protocol: SCTP, port: 80}
`, probes: []testkit.Probe{
		{From: "prod", To: "db", Proto: "tcp", Port: 6379, Want: true},
		{From: "prod", To: "db", V6: true, Proto: "tcp", Port: 6379, Want: true},
		{From: "frontend", To: "db", V6: true, Proto: "tcp", Port: 80, Want: true},
		{From: "frontend", To: "db", Proto: "udp", Port: 53, Want: true},
		{From: "frontend", To: "db", V6: true, Proto: "udp", Port: 53, Want: true},
		{From: "frontend", To: "db", Proto: "tcp", Port: 6380, Want: false},
		{From: "frontend", To: "db", V6: true, Proto: "tcp", Port: 6380, Want: false},
		{From: "frontend", To: "db", Proto: "udp", Port: 80, Want: false},
		{From: "dev", To: "db", Proto: "tcp", Port: 6379, Want: false},
		{From: "dev", To: "db", V6: true, Proto: "tcp", Port: 80, Want: false},
		{From: "web", To: "db", Proto: "tcp", Port: 80, Want: false},
		{From: "ext-ok", To: "db", Proto: "tcp", Port: 5978, Want: true},
		{From: "ext-except", To: "db", Proto: "tcp", Port: 5978, Want: false},
	}},
}

// backend is one way of programming a node namespace.
type backend struct {
	name string
	dataplane.Applier
}

// apply applies rs and fails on a problem too: every ruleset the compiler
// writes translates whole.
func (b backend) apply(ctx context.Context, rs ruleset.Ruleset) error {
	problems, err := b.Apply(ctx, rs)
	if err == nil && len(problems) > 0 {
		err = fmt.Errorf("%s: problems: %v", b.name, problems)
	}
	return err
}

func nftBackend(t *testing.T, tp *topology) backend {
	a, err := nft.NewNetlinkApplier(tp.nodePath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return backend{"nftables", a}
}

func iptBackend(t *testing.T, tp *topology, m Mode) backend {
	a, err := New(WithNetNS(tp.nodePath), WithMode(m))
	if err != nil {
		t.Fatal(err)
	}
	return backend{"iptables-" + string(m), a}
}

// backendKinds are the backends kernel tests compare.
var backendKinds = []string{"nft", "ipt-nft", "ipt-legacy"}

// kindBackend is the backend of one of backendKinds for tp.
func kindBackend(t *testing.T, tp *topology, kind string) backend {
	switch kind {
	case "nft":
		return nftBackend(t, tp)
	case "ipt-nft":
		return iptBackend(t, tp, ModeNFT)
	}
	return iptBackend(t, tp, ModeLegacy)
}

// counted reads b's counters, failing the test on error.
func (b backend) counted(t *testing.T) map[string]ruleset.CounterValue {
	t.Helper()
	v, err := b.Counters(context.Background())
	if err != nil {
		t.Fatalf("%s: counters: %v", b.name, err)
	}
	return v
}

// probeCounts is what each named counter should count for a scenario's
// probes, by the steps of their ruleset.Trace: an allowed probe's first
// packet is the only one a rule after the conntrack rules sees (the rest
// are established), a dropped probe counts at least one packet (and its
// retransmissions).
type probeCounts struct{ allowed, dropped map[string]uint64 }

// add counts the counters of a probe's trace.
func (pc probeCounts) add(steps []ruleset.Step, allowed bool) {
	for _, c := range tracedCounters(steps) {
		if allowed {
			pc.allowed[c]++
		} else {
			pc.dropped[c]++
		}
	}
}

// compareCounters checks what each backend counted between before and
// after: for each counter only allowed probes pass (a policy rule that
// accepts), exactly those; for one dropped probes pass too (isolation, a
// ClusterNetworkPolicy Deny or Pass), at least a packet of each, and
// packets on every backend or on none. It returns how many packets the
// policy rules counted for allowed probes.
func compareCounters(t *testing.T, rs ruleset.Ruleset, names []string, before, after []map[string]ruleset.CounterValue, want probeCounts) uint64 {
	t.Helper()
	var total uint64
	for _, counter := range rs.Counters {
		c := counter.Name
		exact := want.dropped[c] == 0 && counter.Owner().Kind != ruleset.OwnerIsolation
		least := want.allowed[c] + want.dropped[c]
		var ref uint64
		for i := range names {
			b, okb := before[i][c]
			a, oka := after[i][c]
			if !okb || !oka {
				t.Errorf("%s: counter %s is missing", names[i], c)
				continue
			}
			d := a.Packets - b.Packets
			switch {
			case exact && d != least:
				t.Errorf("%s: %s counted %d packets, want %d (the allowed probes it decides)", names[i], c, d, least)
			case exact:
			case d < least:
				t.Errorf("%s: %s counted %d packets, want at least %d (a packet of each probe it decides)", names[i], c, d, least)
			case i == 0:
				ref = d
			case (d > 0) != (ref > 0):
				t.Errorf("%s: %s counted %d packets, %s %d", names[i], c, d, names[0], ref)
			}
		}
		if !strings.HasPrefix(c, "denied-") {
			total += want.allowed[c]
		}
	}
	return total
}

// kernelTopology is a node namespace with the kernel test's hosts and the
// node's own address ("node", which serves the kubelet's port too), each
// serving kernelPorts.
func kernelTopology(t *testing.T, tag string) *topology {
	tp := newTopology(t, tag)
	for _, h := range kernelHosts {
		serve(t, tp.addHost(t, h.key, h.ips...), kernelPorts)
	}
	serve(t, tp.addNode(t, "node", kernelNodeAddr), append([]int{10250}, kernelPorts...))
	return tp
}

// packet is the first packet of probe p for ruleset.Trace: a pod's packet
// to the "node" host comes in on a pod's veth to the host (the input
// hook).
func (tp *topology) packet(p testkit.Probe) ruleset.Packet {
	proto, _ := ruleset.ProtoNumber(p.Proto)
	pkt := ruleset.Packet{Src: pick(tp.hosts[p.From], p.V6), Dst: pick(tp.hosts[p.To], p.V6), Proto: proto, DPort: uint16(p.Port)}
	if p.To == "node" {
		pkt.ToHost, pkt.InIface = true, fixtures.TraceVeth(policy.DefaultPodInterfacePrefix)
	}
	return pkt
}

// TestBackendsGiveSameVerdicts wires the same hosts to three node
// namespaces, programs one with nftables and the others with this package
// (nf_tables and legacy flavours), and checks that real TCP and UDP probes
// give the expected matrix — the same for every backend and for ruleset.Trace —
// through a sequence of scenarios, one with the ClusterNetworkPolicies of
// both tiers of testdata/tiers-dualstack.yaml and pods' packets to their
// node (filter INPUT), then those of testdata/tiers-logged.yaml with
// denied packets logged, which the next scenario removes.
func TestBackendsGiveSameVerdicts(t *testing.T) {
	type node struct {
		tp *topology
		b  backend
	}
	var nodes []node
	for i, kind := range backendKinds {
		tp := kernelTopology(t, fmt.Sprintf("k%d", i))
		nodes = append(nodes, node{tp, kindBackend(t, tp, kind)})
	}
	ctx := context.Background()
	var policyCounted uint64
	for _, sc := range kernelScenarios {
		t.Run(sc.name, func(t *testing.T) {
			rs := policy.Compile(sc.snapshot(t))
			if len(rs.Problems) > 0 {
				t.Fatalf("problems: %v", rs.Problems)
			}
			counts := probeCounts{map[string]uint64{}, map[string]uint64{}} // what the rules should count
			for _, p := range sc.probes {
				v, steps := ruleset.Trace(rs, nodes[0].tp.packet(p))
				if (v == ruleset.VerdictAccept) != p.Want {
					t.Errorf("ruleset.Trace disagrees with the expected matrix on %s", p)
				}
				counts.add(steps, p.Want)
			}
			var names []string
			var before, after []map[string]ruleset.CounterValue
			for _, n := range nodes {
				if err := n.b.apply(ctx, rs); err != nil {
					t.Fatalf("%s: apply: %v", n.b.name, err)
				}
				names, before = append(names, n.b.name), append(before, n.b.counted(t))
			}
			for _, n := range nodes {
				got := runProbes(t, n.tp, sc.probes)
				for i, p := range sc.probes {
					if got[i] != p.Want {
						t.Errorf("%s: %s: got allowed=%v, want %v", n.b.name, p, got[i], p.Want)
					}
				}
				after = append(after, n.b.counted(t))
			}
			policyCounted += compareCounters(t, rs, names, before, after, counts)
		})
	}
	if policyCounted == 0 {
		t.Error("no policy rule counted a packet in any scenario")
	}
}
