package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/yaml"

	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

type fakeCounters map[string]ruleset.CounterValue

func (f fakeCounters) Counters(context.Context) (map[string]ruleset.CounterValue, error) {
	return f, nil
}

// countedRuleset compiles one policy of two ingress rules selecting a local
// pod.
func countedRuleset(t *testing.T) ruleset.Ruleset {
	t.Helper()
	return countedRulesetLogging(t, policy.DeniedLog{})
}

// countedRulesetLogging is countedRuleset with denied packets logged as
// log says.
func countedRulesetLogging(t *testing.T, log policy.DeniedLog) ruleset.Ruleset {
	t.Helper()
	s := policy.Snapshot{Node: policy.Node{Name: "n1"}, LogDenied: log, Pods: []policy.Pod{
		{Namespace: "default", Name: "web", Node: "n1", Labels: map[string]string{"app": "web"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.10")}},
	}}
	err := yaml.Unmarshal([]byte(`[{metadata: {namespace: default, name: web}, spec: {podSelector: {matchLabels: {app: web}},
		ingress: [{ports: [{port: 80}]}, {from: [{ipBlock: {cidr: 10.9.0.0/16}}]}]}}]`), &s.Policies)
	if err != nil {
		t.Fatal(err)
	}
	return policy.Compile(s)
}

// TestRuleCountersExportEachPolicyRule pins the metrics of the kernel's
// named counters: one series per policy rule, labelled from the
// counter's owner, the isolation drops by direction, the spoofed-source drops and
// the drops of unclassified pods by direction.
func TestRuleCountersExportEachPolicyRule(t *testing.T) {
	r := countedRuleset(t)
	values := fakeCounters{"denied-ingress": {Packets: 7, Bytes: 420}, "denied-egress": {}, policy.CounterSpoofed: {Packets: 3, Bytes: 180},
		policy.CounterUnclassifiedIngress: {Packets: 2, Bytes: 120}, policy.CounterUnclassifiedEgress: {Packets: 5, Bytes: 300}}
	for i, c := range r.Counters {
		if strings.HasPrefix(c.Name, "pol-") {
			values[c.Name] = ruleset.CounterValue{Packets: uint64(10 + i), Bytes: uint64(1000 + i)}
		}
	}
	if len(values) != 7 || len(r.Counters) != 7 {
		t.Fatalf("want 2 rule counters and 5 drop counters, have %v", r.Counters)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newRuleCounters(values.Counters, func() ruleset.Ruleset { return r }, slog.Default()))
	got, err := testutil.GatherAndCount(reg, "weir_policy_rule_packets_total", "weir_policy_rule_bytes_total", "weir_denied_packets_total")
	if err != nil {
		t.Fatal(err)
	}
	if got != 6 {
		t.Errorf("%d series, want 2 rules x (packets, bytes) + 2 directions", got)
	}
	var want strings.Builder
	want.WriteString("# HELP weir_denied_packets_total Packets dropped because no policy selecting the pod allowed them.\n# TYPE weir_denied_packets_total counter\n")
	want.WriteString("weir_denied_packets_total{direction=\"egress\"} 0\nweir_denied_packets_total{direction=\"ingress\"} 7\n")
	want.WriteString("# HELP weir_spoofed_packets_total Packets dropped because their source address is not routed back through the pod interface they came in on.\n# TYPE weir_spoofed_packets_total counter\n")
	want.WriteString("weir_spoofed_packets_total 3\n")
	want.WriteString("# HELP weir_unclassified_denied_packets_total Packets of local pods the agent has not classified, dropped because their namespace has a policy of that direction.\n# TYPE weir_unclassified_denied_packets_total counter\n")
	want.WriteString("weir_unclassified_denied_packets_total{direction=\"egress\"} 5\nweir_unclassified_denied_packets_total{direction=\"ingress\"} 2\n")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want.String()),
		"weir_denied_packets_total", "weir_spoofed_packets_total", "weir_unclassified_denied_packets_total"); err != nil {
		t.Error(err)
	}
	// The rule counters sort after denied-egress and denied-ingress: rule
	// 0's is r.Counters[2], rule 1's r.Counters[3].
	want.Reset()
	want.WriteString("# HELP weir_policy_rule_packets_total Packets a policy rule accepted: the first packet of each connection it allowed.\n# TYPE weir_policy_rule_packets_total counter\n")
	want.WriteString("weir_policy_rule_packets_total{direction=\"ingress\",policy=\"default/web\",rule=\"0\"} 12\n")
	want.WriteString("weir_policy_rule_packets_total{direction=\"ingress\",policy=\"default/web\",rule=\"1\"} 13\n")
	want.WriteString("# HELP weir_policy_rule_bytes_total Bytes of the packets a policy rule accepted.\n# TYPE weir_policy_rule_bytes_total counter\n")
	want.WriteString("weir_policy_rule_bytes_total{direction=\"ingress\",policy=\"default/web\",rule=\"0\"} 1002\n")
	want.WriteString("weir_policy_rule_bytes_total{direction=\"ingress\",policy=\"default/web\",rule=\"1\"} 1003\n")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want.String()),
		"weir_policy_rule_packets_total", "weir_policy_rule_bytes_total"); err != nil {
		t.Error(err)
	}
}

// blockingCounters counts its reads; the first waits for release after
// saying it started, as a slow iptables-save would.
type blockingCounters struct {
	reads            atomic.Int32
	started, release chan struct{}
}

func (b *blockingCounters) Counters(context.Context) (map[string]ruleset.CounterValue, error) {
	if b.reads.Add(1) == 1 {
		close(b.started)
		<-b.release
	}
	return map[string]ruleset.CounterValue{"denied-ingress": {Packets: 7}, "denied-egress": {}}, nil
}

// TestScrapesShareCounterReads pins how often scrapes read the kernel's
// counters: scrapes that come while a read runs wait for it and share it,
// and scrapes within countersMaxAge of a read use its result, so that a
// scraper in a loop costs one read (an iptables-save per family) a second.
func TestScrapesShareCounterReads(t *testing.T) {
	r := countedRuleset(t)
	read := &blockingCounters{started: make(chan struct{}), release: make(chan struct{})}
	rc := newRuleCounters(read.Counters, func() ruleset.Ruleset { return r }, slog.Default())
	clock := time.Unix(1000, 0)
	rc.read.now = func() time.Time { return clock } // stands still unless moved below
	reg := prometheus.NewRegistry()
	reg.MustRegister(rc)
	scrape := func() error {
		n, err := testutil.GatherAndCount(reg, "weir_denied_packets_total")
		if err == nil && n != 2 {
			err = fmt.Errorf("%d denied series, want 2", n)
		}
		return err
	}

	errs := make(chan error, 3)
	go func() { errs <- scrape() }()
	<-read.started
	go func() { errs <- scrape() }() // during the read: waits for it
	go func() { errs <- scrape() }()
	close(read.release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := read.reads.Load(); n != 1 {
		t.Errorf("3 scrapes, 2 of them during a read: %d reads, want 1", n)
	}
	clock = clock.Add(countersMaxAge - time.Millisecond)
	if err := scrape(); err != nil {
		t.Fatal(err)
	}
	if n := read.reads.Load(); n != 1 {
		t.Errorf("a scrape within countersMaxAge of the read: %d reads, want 1", n)
	}
	clock = clock.Add(time.Millisecond)
	if err := scrape(); err != nil {
		t.Fatal(err)
	}
	if n := read.reads.Load(); n != 2 {
		t.Errorf("a scrape countersMaxAge after the read: %d reads, want 2", n)
	}
}

// TestParsePacket pins what a denied-packet line reads from an NFLOG
// payload.
func TestParsePacket(t *testing.T) {
	v4 := []byte{0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0x00, 0x50}
	v6 := make([]byte, 44)
	v6[0], v6[6] = 0x60, 17
	copy(v6[8:], netip.MustParseAddr("fd00::1").AsSlice())
	copy(v6[24:], netip.MustParseAddr("fd00::2").AsSlice())
	v6[42], v6[43] = 0x00, 0x35
	tests := []struct {
		name string
		in   []byte
		want packetInfo
		err  bool
	}{
		{"ipv4 tcp", v4, packetInfo{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), "tcp", 80}, false},
		{"ipv6 udp", v6, packetInfo{netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), "udp", 53}, false},
		{"ipv4 header cut", v4[:16], packetInfo{}, true},
		{"not ip", []byte{0x10, 0}, packetInfo{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePacket(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if !tc.err && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestDeniedLoggerNamesThePolicies pins the context of a denied packet:
// the selection chain its prefix names (whole, or cut as iptables cuts
// it) and the policies that chain tries. Denied packets are logged: a pod
// one policy selects then has a selection chain too, which logs.
func TestDeniedLoggerNamesThePolicies(t *testing.T) {
	r := countedRulesetLogging(t, policy.DeniedLog{Group: 5})
	d := DeniedLogger{Ruleset: func() ruleset.Ruleset { return r }}
	var sel string
	for _, c := range r.Chains {
		if strings.HasPrefix(c.Name, "sel-in-") {
			sel = c.Name
		}
	}
	for _, prefix := range []string{sel, sel[:len(sel)-3]} {
		chain, policies := d.policies(prefix)
		if chain != sel || len(policies) != 1 || policies[0] != "default/web" {
			t.Errorf("prefix %q: chain %s tries %v, want %s trying [default/web]", prefix, chain, policies, sel)
		}
	}
	if chain, policies := d.policies("sel-in-NOSUCH"); policies != nil {
		t.Errorf("unknown prefix gives chain %s, policies %v", chain, policies)
	}
}

// clusterRuleset compiles an Admin and a Baseline ClusterNetworkPolicy
// holding a local pod, with denied packets logged.
func clusterRuleset(t *testing.T) ruleset.Ruleset {
	t.Helper()
	s := policy.Snapshot{Node: policy.Node{Name: "n1", Addrs: []netip.Addr{netip.MustParseAddr("192.168.1.1")}}, LogDenied: policy.DeniedLog{Group: 5},
		Namespaces: []policy.Namespace{{Name: "default"}, {Name: "dev", Labels: map[string]string{"team": "dev"}}},
		Pods: []policy.Pod{
			{Namespace: "default", Name: "web", Node: "n1", Labels: map[string]string{"app": "web"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.10")}},
			{Namespace: "dev", Name: "tool", Node: "n2", IPs: []netip.Addr{netip.MustParseAddr("10.0.2.5")}},
		}}
	err := yaml.Unmarshal([]byte(`
- metadata: {name: guard}
  spec: {tier: Admin, priority: 3, subject: {namespaces: {}},
    ingress: [{name: no dev, action: Deny, from: [{namespaces: {matchLabels: {team: dev}}}]}]}
- metadata: {name: base}
  spec: {tier: Baseline, priority: 1, subject: {namespaces: {}},
    egress: [{action: Accept, to: [{networks: [10.9.0.0/16]}]}]}`), &s.ClusterPolicies)
	if err != nil {
		t.Fatal(err)
	}
	return policy.Compile(s)
}

// TestClusterRuleCountersNameTierPolicyRuleAndAction pins the series of a
// ClusterNetworkPolicy rule's counter: labelled with its tier, policy,
// direction, index, name and action.
func TestClusterRuleCountersNameTierPolicyRuleAndAction(t *testing.T) {
	r := clusterRuleset(t)
	values := fakeCounters{}
	for _, c := range r.Counters {
		if strings.HasPrefix(c.Name, "cnp-") {
			values[c.Name] = ruleset.CounterValue{Packets: 4, Bytes: 400}
		}
	}
	if len(values) != 2 {
		t.Fatalf("want 2 cluster rule counters, have %v", r.Counters)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newRuleCounters(values.Counters, func() ruleset.Ruleset { return r }, slog.Default()))
	want := "# HELP weir_cluster_policy_rule_packets_total Packets a ClusterNetworkPolicy rule decided (accepted, denied or passed): the first packet of each connection.\n" +
		"# TYPE weir_cluster_policy_rule_packets_total counter\n" +
		"weir_cluster_policy_rule_packets_total{action=\"Accept\",direction=\"egress\",policy=\"base\",rule=\"0\",rule_name=\"\",tier=\"Baseline\"} 4\n" +
		"weir_cluster_policy_rule_packets_total{action=\"Deny\",direction=\"ingress\",policy=\"guard\",rule=\"0\",rule_name=\"no dev\",tier=\"Admin\"} 4\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "weir_cluster_policy_rule_packets_total"); err != nil {
		t.Error(err)
	}
}

// TestDeniedLoggerNamesTheClusterRule pins the context of a packet a
// ClusterNetworkPolicy Deny rule dropped: its log prefix names the rule's
// counter (whole, or cut as iptables cuts it), whose owner is the rule.
func TestDeniedLoggerNamesTheClusterRule(t *testing.T) {
	r := clusterRuleset(t)
	d := DeniedLogger{Ruleset: func() ruleset.Ruleset { return r }}
	var prefix string
	for _, ch := range r.Chains {
		for _, rule := range ch.Rules {
			if rule.Log != nil && rule.Owner.Action == "Deny" {
				prefix = strings.TrimPrefix(rule.Log.Prefix, policy.DeniedPrefix)
			}
		}
	}
	if prefix == "" {
		t.Fatal("no Deny rule logs")
	}
	for _, p := range []string{prefix, prefix[:len(prefix)-4]} {
		o, ok := d.clusterRule(p)
		if !ok || o.Tier != ruleset.TierAdmin || o.Policy != "guard" || o.Direction != ruleset.Ingress || o.RuleName != "no dev" || o.Action != "Deny" {
			t.Errorf("prefix %q names %+v (%v)", p, o, ok)
		}
	}
	if o, ok := d.clusterRule("sel-in-NOSUCH"); ok {
		t.Errorf("unknown prefix names %+v", o)
	}
}

// TestExplainNamesTheClusterRule pins what explain says of a packet a
// ClusterNetworkPolicy rule decided: the tier, the policy, the rule by
// index and name, and the action; and that a pod's packet to its own node
// is traced through the input hook.
func TestExplainNamesTheClusterRule(t *testing.T) {
	r := clusterRuleset(t)
	s := policy.Snapshot{Node: policy.Node{Name: "n1", Addrs: []netip.Addr{netip.MustParseAddr("192.168.1.1")}},
		Pods: []policy.Pod{{Namespace: "default", Name: "web", Node: "n1", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.10")}}}}
	p := explainPacket(s, netip.MustParseAddr("10.0.2.5"), netip.MustParseAddr("10.0.0.10"), ruleset.ProtoTCP, 80)
	v, steps := ruleset.Trace(r, p)
	if v != ruleset.VerdictDrop || len(steps) == 0 {
		t.Fatalf("trace: %v %s", v, ruleset.JoinSteps(steps, "\n"))
	}
	last := explainStep(steps[len(steps)-1])
	o := last.Owner
	if o == nil || o.Kind != "policy-rule" || o.Tier != "Admin" || o.Policy != "guard" || o.Namespace != "" || o.Direction != "ingress" ||
		o.Rule == nil || *o.Rule != 0 || o.RuleName != "no dev" || o.Action != "Deny" || last.Verdict != "drop" {
		t.Errorf("deciding step %+v, owner %+v", last, o)
	}
	if p := explainPacket(s, netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("192.168.1.1"), ruleset.ProtoTCP, 10250); !p.ToHost || p.InIface == "" {
		t.Errorf("pod to its node: %+v, want a packet to the host from a pod interface", p)
	}
	if p := explainPacket(s, netip.MustParseAddr("10.0.2.5"), netip.MustParseAddr("192.168.1.1"), ruleset.ProtoTCP, 10250); p.ToHost {
		t.Errorf("remote pod to the node: %+v, want a forwarded packet", p)
	}
}
