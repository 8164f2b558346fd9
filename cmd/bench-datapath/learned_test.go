package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// TestLearnedPairs: -learned N yields N distinct pairs for the IPv4 set
// of learnedPolicy's domainNames rule, client . server first, the others
// spread evenly over the rule's local pods, to addresses of learnedRange;
// the set is large enough to hold them all.
func TestLearnedPairs(t *testing.T) {
	const n = 10000
	rs := policy.Compile(snapshot(10000, 1000, 0, n))
	l, err := learnedPairs(rs, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.pairs) != n {
		t.Fatalf("%d pairs, want %d", len(l.pairs), n)
	}
	if want := (pair{netip.MustParseAddr(clientIP), netip.MustParseAddr(serverIP)}); l.pairs[0] != want {
		t.Errorf("first pair %v, want client . server %v", l.pairs[0], want)
	}
	var rule ruleset.DNSRule
	for _, r := range rs.DNS {
		if r.Owner.Policy == learnedPolicyName {
			rule = r
		}
	}
	if l.set != rule.Set4 || l.set == "" {
		t.Errorf("pairs for set %q, want the rule's IPv4 set %q", l.set, rule.Set4)
	}
	if s, ok := rs.Set(l.set); !ok || !s.Dynamic || s.Size < n {
		t.Errorf("set %s: %+v, want a Dynamic set of size %d or more", l.set, s, n)
	}
	// One app2 pod per namespace is local, and the client: 101.
	if l.pods != 101 || len(rule.Pods) != 101 {
		t.Errorf("pairs over %d pods, rule holds %d, want 101", l.pods, len(rule.Pods))
	}
	seen := map[pair]bool{}
	perPod := map[netip.Addr]int{}
	for i, p := range l.pairs {
		if seen[p] {
			t.Fatalf("pair %d %v twice", i, p)
		}
		seen[p] = true
		perPod[p.pod]++
		if i > 0 && !learnedRange.Contains(p.addr) {
			t.Errorf("pair %d: address %s outside %s", i, p.addr, learnedRange)
		}
	}
	for _, pod := range rule.Pods {
		if c := perPod[pod]; c < n/101 || c > n/101+2 {
			t.Errorf("pod %s has %d pairs, want about %d", pod, c, n/101)
		}
	}
	if len(perPod) != len(rule.Pods) {
		t.Errorf("pairs for %d pods, want the rule's %d", len(perPod), len(rule.Pods))
	}
}

// TestLearnedPathGoesThroughTheSet: with -learned, the client's egress is
// accepted by learnedPolicy's set, after the cluster policies that hold
// the client and before any NetworkPolicy, and checkPath refuses pairs
// without client . server: the policy's next rule drops the connection.
func TestLearnedPathGoesThroughTheSet(t *testing.T) {
	for _, tc := range []struct {
		name            string
		clusterPolicies int
		egress          string
	}{
		{"learned only", 0, "bench-learned"},
		{"with cluster policies", 1000, "cnp-0021 cnp-0321 cnp-0421 cnp-0721 cnp-0821 bench-learned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := policy.Compile(snapshot(10000, 1000, tc.clusterPolicies, 100))
			l, err := learnedPairs(rs, 100)
			if err != nil {
				t.Fatal(err)
			}
			p, err := checkPath(rs, l)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(p.Egress, " "); got != tc.egress {
				t.Errorf("egress walks %s, want %s", got, tc.egress)
			}
			if got, want := strings.Join(p.Ingress, " "), "ns0/app0-0000 ns0/monitoring-0900 ns0/tier-0800"; !strings.HasSuffix(got, want) {
				t.Errorf("ingress walks %s, want it to end with %s", got, want)
			}
			l.pairs = l.pairs[1:]
			if _, err := checkPath(rs, l); err == nil || !strings.Contains(err.Error(), "not accepted by bench-learned's domainNames rule") {
				t.Errorf("checkPath without client . server = %v, want a refusal", err)
			}
		})
	}
}

func TestLearnedRefusals(t *testing.T) {
	if _, err := learnedPairs(policy.Compile(snapshot(1000, 100, 0, 0)), 10); err == nil || !strings.Contains(err.Error(), "no domainNames rule") {
		t.Errorf("pairs without the policy: %v, want an error", err)
	}
	if _, err := learnedPairs(policy.Compile(snapshot(1000, 100, 0, 10)), maxLearned+1); err == nil {
		t.Error("more pairs than learnedRange holds: no error")
	}
	if l, err := learnedPairs(policy.Compile(snapshot(1000, 100, 0, 0)), 0); err != nil || len(l.pairs) != 0 {
		t.Errorf("no pairs asked: %v, %v", l, err)
	}
}

// TestWithoutLearned: nft-bare's snapshot drops learnedPolicy and only it.
func TestWithoutLearned(t *testing.T) {
	s := snapshot(1000, 100, 10, 10)
	if got := len(s.ClusterPolicies); got != 11 {
		t.Fatalf("%d cluster policies, want 10 and %s", got, learnedPolicyName)
	}
	bare := withoutLearned(s)
	if len(bare.ClusterPolicies) != 10 {
		t.Errorf("%d cluster policies left, want 10", len(bare.ClusterPolicies))
	}
	for _, p := range bare.ClusterPolicies {
		if p.Name == learnedPolicyName {
			t.Errorf("%s still there", learnedPolicyName)
		}
	}
	if len(s.ClusterPolicies) != 11 {
		t.Error("withoutLearned changed its argument")
	}
	if rs := policy.Compile(bare); len(rs.DNS) != 0 {
		t.Errorf("bare ruleset has domainNames rules: %v", rs.DNS)
	}
}
