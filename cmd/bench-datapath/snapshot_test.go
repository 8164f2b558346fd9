package main

import (
	"strings"
	"testing"

	"github.com/weir-cni/weir/policy"
)

// TestSnapshotMakesEveryNewConnectionWalkThePolicy keeps the benchmark's
// input meaningful: the test connection is allowed only by the last of
// several policies on each side, the denied port is dropped, and every
// policy selects some local pod, so the node's table holds all of them.
func TestSnapshotMakesEveryNewConnectionWalkThePolicy(t *testing.T) {
	for _, tc := range []struct {
		name            string
		pods, policies  int
		clusterPolicies int
		ingress, egress []string
	}{
		{"small cluster", 1000, 100, 0,
			[]string{"ns0/app0-0000", "ns0/monitoring-0090", "ns0/tier-0080"}, []string{"ns2/app2-0022", "ns2/tier-0082"}},
		{"benchmark size", 10000, 1000, 0,
			[]string{"ns0/app0-0000", "ns0/monitoring-0900", "ns0/tier-0800"}, []string{"ns2/app2-0202", "ns2/tier-0802"}},
		{"with cluster policies", 10000, 1000, 1000,
			[]string{"cnp-0000", "cnp-0100", "cnp-0400", "cnp-0500", "cnp-0800", "cnp-0900",
				"ns0/app0-0000", "ns0/monitoring-0900", "ns0/tier-0800"},
			[]string{"cnp-0021", "cnp-0321", "cnp-0421", "cnp-0721", "cnp-0821", "ns2/app2-0202", "ns2/tier-0802"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := policy.Compile(snapshot(tc.pods, tc.policies, tc.clusterPolicies, 0))
			p, err := checkPath(rs, learned{})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Join(p.Ingress, " "), strings.Join(tc.ingress, " "); got != want {
				t.Errorf("ingress walks %s, want %s", got, want)
			}
			if got, want := strings.Join(p.Egress, " "), strings.Join(tc.egress, " "); got != want {
				t.Errorf("egress walks %s, want %s", got, want)
			}
			compiled := map[string]bool{}
			for _, c := range rs.Chains {
				if strings.HasPrefix(c.Name, "pol-") {
					compiled[c.Name[strings.LastIndex(c.Name, "/")+1:]] = true
				}
			}
			if len(compiled) != tc.policies {
				t.Errorf("%d policies have chains in the node's table, want all %d", len(compiled), tc.policies)
			}
		})
	}
}

// TestCheckPathRejectsAClusterWithoutTheAllowingPolicy: with too few
// policies for the tier-* shape, nothing allows the test connection.
func TestCheckPathRejectsAClusterWithoutTheAllowingPolicy(t *testing.T) {
	_, err := checkPath(policy.Compile(snapshot(1000, 80, 0, 0)), learned{})
	if err == nil || !strings.Contains(err.Error(), "not accepted") {
		t.Fatalf("checkPath = %v, want a 'not accepted' error", err)
	}
}
