package policy

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
)

const domainScenario = "testdata/compile/domain-names.yaml"

// TestDNSRules pins what Ruleset.DNS tells the proxy: a rule per
// ClusterNetworkPolicy egress rule with domainNames peers whose subject
// holds a local pod, in evaluation order, its sets, its names (lower
// case, no trailing dot, sorted) and the addresses of its local pods.
func TestDNSRules(t *testing.T) {
	r := Compile(loadScenario(t, domainScenario).Snapshot)
	want := []struct {
		policy string
		rule   int
		names  []string
		pods   string
	}{
		{"web-out", 0, []string{"*.cdn.example.com", "api.example.com"}, "[10.0.1.20 fd00:1::20]"},
		{"web-out", 1, []string{"downloads.example.org"}, "[10.0.1.20 fd00:1::20]"},
		{"api-out", 0, []string{"*.example.net"}, "[10.0.1.40]"},
	}
	if len(r.DNS) != len(want) {
		t.Fatalf("%d DNS rules, want %d: %+v", len(r.DNS), len(want), r.DNS)
	}
	for i, w := range want {
		d := r.DNS[i]
		if d.Owner.Policy != w.policy || d.Owner.Rule != w.rule || !slices.Equal(d.Names, w.names) || fmt.Sprint(d.Pods) != w.pods {
			t.Errorf("DNS rule %d: %+v, want %+v", i, d, w)
		}
		for _, name := range []string{d.Set4, d.Set6} {
			if s, ok := r.Set(name); !ok || !s.Dynamic || !s.Timeout || s.Size != DefaultDNSSetSize || len(s.Elems) != 0 {
				t.Errorf("DNS rule %d: set %s is %+v (found %v)", i, name, s, ok)
			}
		}
	}
}

// TestDNSOptions pins that the mark, the proxy's port and the set size
// reach the ruleset, and that a Compiler given other options compiles as
// Compile does.
func TestDNSOptions(t *testing.T) {
	s := loadScenario(t, domainScenario).Snapshot
	x := NewCompiler()
	x.Compile(s)
	s.DNSMark, s.DNSProxyPort, s.DNSSetSize = 0x100000, 5353, 16
	got, want := x.Compile(s).String(), Compile(s).String()
	if got != want {
		t.Fatalf("a Compiler given new DNS options differs from Compile:\n%s", textdiff.Lines(want, got))
	}
	for _, part := range []string{"tproxy ip to :5353", "meta mark & 0x00100000 == 0x00100000 accept", "\t\tsize 16\n"} {
		if !strings.Contains(got, part) {
			t.Errorf("the ruleset lacks %q", part)
		}
	}
}

// TestDNSSetsFollowThePolicy pins the names of the learned-address sets:
// any edit of the policy's spec renames its sets (their learned addresses
// go at once), a change elsewhere keeps them, and a policy whose subject
// holds no local pod, or without domainNames, has none and no steering.
func TestDNSSetsFollowThePolicy(t *testing.T) {
	s := loadScenario(t, domainScenario).Snapshot
	sets := func(s Snapshot) map[string]string { // by policy/rule
		out := map[string]string{}
		for _, d := range Compile(s).DNS {
			out[d.Owner.Policy+"/"+strconv.Itoa(d.Owner.Rule)] = d.Set4 + " " + d.Set6
		}
		return out
	}
	before := sets(s)
	edited := s
	edited.ClusterPolicies = slices.Clone(s.ClusterPolicies)
	i := slices.IndexFunc(edited.ClusterPolicies, func(p *cnp.ClusterNetworkPolicy) bool { return p.Name == "api-out" })
	p := edited.ClusterPolicies[i].DeepCopy()
	p.Spec.Priority++
	edited.ClusterPolicies[i] = p
	after := sets(edited)
	if after["api-out/0"] == before["api-out/0"] || after["web-out/0"] != before["web-out/0"] || after["web-out/1"] != before["web-out/1"] {
		t.Errorf("sets before %v, after editing api-out %v", before, after)
	}
	for _, tc := range []struct {
		name string
		edit func(*Snapshot)
	}{
		{"no local subject", func(s *Snapshot) {
			s.Pods = slices.DeleteFunc(slices.Clone(s.Pods), func(p Pod) bool { return p.Namespace == "shop" })
		}},
		{"no domainNames", func(s *Snapshot) { s.ClusterPolicies = nil }},
	} {
		c := s
		tc.edit(&c)
		r := Compile(c)
		text := r.String()
		if len(r.DNS) != 0 || strings.Contains(text, "dns4-") || strings.Contains(text, "dns-pods") || strings.Contains(text, "tproxy") {
			t.Errorf("%s: DNS rules %v, or steering in the ruleset", tc.name, r.DNS)
		}
		if _, ok := r.Counter(CounterDNSProxyDown); ok {
			t.Errorf("%s: counter %s without steering", tc.name, CounterDNSProxyDown)
		}
	}
}

// TestDNSSteeringSharesTheForwardBody pins that the check of a DNS query
// before the proxy is the forward chains' own policy check, rule for
// rule.
func TestDNSSteeringSharesTheForwardBody(t *testing.T) {
	r := Compile(loadScenario(t, domainScenario).Snapshot)
	for _, pair := range [][2]string{{chainDNSEgressPolicy, chainEgress}, {chainDNSIngressPolicy, chainIngress}} {
		check, _ := r.Chain(pair[0])
		fwd, _ := r.Chain(pair[1])
		if len(check.Rules) == 0 || !reflect.DeepEqual(check.Rules, fwd.Rules[2:]) {
			t.Errorf("%s differs from %s after its conntrack rules", pair[0], pair[1])
		}
	}
	in, _ := r.Chain(chainInput)
	if first := in.Rules[0]; first.Owner.Kind != ruleset.OwnerDNSProxy || first.Matches[0].Mark != DefaultDNSMark {
		t.Errorf("input-egress does not start with the accept of marked queries: %s", first)
	}
}
