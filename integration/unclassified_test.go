//go:build integration

package integration

import (
	"testing"

	"github.com/weir-cni/weir/internal/testkit"
)

// unclassifiedPolicies isolate default/db for ingress (a pod the agent
// does not know may be a db) and every prod pod for egress.
const unclassifiedPolicies = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-closed, namespace: default}
spec: {podSelector: {matchLabels: {role: db}}, ingress: []}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: no-egress, namespace: prod}
spec: {podSelector: {}, policyTypes: [Egress]}
`

// TestFailOpenPodTakesItsNamespacesDefaultDeny wires pods with the
// fail-open plugin after the agent synced, so the agent does not know
// them (the plugin does not ask it: "agentWait": "0s"). The plugin put
// each host veth in its namespace's link group, so the kernel still
// denies an unknown pod what its namespace's policies could deny it: a
// pod of default (an Ingress policy) is unreachable and a pod of prod (an
// Egress policy) cannot reach out, each counted, while their other
// direction, a pod of a namespace without policy, and the node stay open.
// Once the manifests list them, their own verdicts hold. Both backends.
func TestFailOpenPodTakesItsNamespacesDefaultDeny(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			pods, nsLabels := policyPods()
			c := newPolicyCluster(t, pods, nsLabels, withBackend(backend), withAgentArgs("--http-addr", "127.0.0.1:9765"))
			c.setPolicies(unclassifiedPolicies)
			for _, p := range []*tpod{
				{ns: "default", name: "late", ips: []string{"172.17.0.40", "fd00:17::40"}},
				{ns: "prod", name: "late", ips: []string{"172.17.0.41", "fd00:17::41"}},
				{ns: "myproject", name: "late", ips: []string{"172.17.0.42", "fd00:17::42"}},
			} {
				c.addPod(p) // not written to the manifests: the agent does not know it
			}
			c.run([]testkit.Probe{
				tcp("myproject/client", "default/late", 8080, false),
				v6(udp("myproject/client", "default/late", 5353, false)),
				tcp("default/late", "myproject/client", 8080, true), // default does not isolate egress
				tcp("prod/late", "myproject/client", 8080, false),
				v6(tcp("prod/late", "myproject/client", 8080, false)),
				tcp("prod/late", "ext:10.0.0.5", 80, false),
				tcp("myproject/client", "prod/late", 8080, true), // prod does not isolate ingress
				tcp("myproject/client", "myproject/late", 8080, true),
				v6(tcp("myproject/late", "myproject/client", 8080, true)),
				tcp("node", "default/late", 8080, true),
				tcp("prod/late", "node", 80, true),
			})
			m := c.metrics()
			for _, dir := range []string{"ingress", "egress"} {
				if m[`weir_unclassified_denied_packets_total{direction="`+dir+`"}`] == 0 {
					t.Errorf("weir_unclassified_denied_packets_total{direction=%q} counted nothing", dir)
				}
			}

			// The agent learns of the pods (default/late has no role=db).
			before, err := c.status()
			if err != nil {
				t.Fatal(err)
			}
			c.writeBase()
			c.waitSynced(before.Syncs)
			c.run([]testkit.Probe{
				tcp("myproject/client", "default/late", 8080, true),
				v6(udp("myproject/client", "default/late", 5353, true)),
				tcp("prod/late", "myproject/client", 8080, false), // no-egress selects it now
			})
		})
	}
}
