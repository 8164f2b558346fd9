package controller

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/yaml"

	"github.com/weir-cni/weir/nft"
)

type fakeCounters map[string]nft.CounterValue

func (f fakeCounters) Counters() (map[string]nft.CounterValue, error) { return f, nil }

// countedRuleset compiles one policy of two ingress rules selecting a local
// pod.
func countedRuleset(t *testing.T) nft.Ruleset {
	t.Helper()
	s := nft.Snapshot{Node: nft.Node{Name: "n1"}, Pods: []nft.Pod{
		{Namespace: "default", Name: "web", Node: "n1", Labels: map[string]string{"app": "web"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.10")}},
	}}
	err := yaml.Unmarshal([]byte(`[{metadata: {namespace: default, name: web}, spec: {podSelector: {matchLabels: {app: web}},
		ingress: [{ports: [{port: 80}]}, {from: [{ipBlock: {cidr: 10.9.0.0/16}}]}]}}]`), &s.Policies)
	if err != nil {
		t.Fatal(err)
	}
	return nft.Compile(s)
}

// TestRuleCountersExportEachPolicyRule pins the metrics of the kernel's
// named counters: one series per policy rule, labelled from the rule's
// comment, and the isolation drops by direction.
func TestRuleCountersExportEachPolicyRule(t *testing.T) {
	r := countedRuleset(t)
	values := fakeCounters{"denied-ingress": {Packets: 7, Bytes: 420}, "denied-egress": {}}
	for i, name := range r.Counters {
		if strings.HasPrefix(name, "pol-") {
			values[name] = nft.CounterValue{Packets: uint64(10 + i), Bytes: uint64(1000 + i)}
		}
	}
	if len(values) != 4 {
		t.Fatalf("want 2 rule counters and 2 drop counters, have %v", r.Counters)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newRuleCounters(values, func() nft.Ruleset { return r }, slog.Default()))
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
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want.String()), "weir_denied_packets_total"); err != nil {
		t.Error(err)
	}
	owners := counterOwners(r)
	seen := map[string]bool{}
	for name, o := range owners {
		if o.policy != "default/web" || o.direction != "ingress" {
			t.Errorf("counter %s belongs to %+v", name, o)
		}
		seen[o.rule] = true
	}
	if !seen["0"] || !seen["1"] {
		t.Errorf("rules with counters: %v, want 0 and 1", seen)
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
// it) and the policies that chain tries.
func TestDeniedLoggerNamesThePolicies(t *testing.T) {
	r := countedRuleset(t)
	d := DeniedLogger{Ruleset: func() nft.Ruleset { return r }}
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
