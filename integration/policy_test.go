//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/weir-cni/weir/examples"
	"github.com/weir-cni/weir/internal/testkit"
)

// policyPods is the cluster every policy case runs against. Addresses are
// requested so they fall inside and outside the ipBlocks under test:
// 172.17.1.0/24 is the except range of test-network-policy.
func policyPods() ([]*tpod, map[string]map[string]string) {
	redis := []cport{{"redis", "TCP", 6379}}
	pods := []*tpod{
		{ns: "default", name: "db", labels: map[string]string{"role": "db"}, ips: []string{"172.17.0.10", "fd00:17::10"}, ports: redis},
		{ns: "default", name: "frontend", labels: map[string]string{"role": "frontend"}, ips: []string{"172.17.1.10", "fd00:17::1:10"}},
		{ns: "default", name: "web", labels: map[string]string{"app": "web"}, ips: []string{"172.17.0.11", "fd00:17::11"},
			ports: []cport{{"http", "TCP", 8080}, {"dns", "UDP", 5353}}},
		{ns: "default", name: "other", ips: []string{"172.17.1.11", "fd00:17::1:11"}},
		{ns: "prod", name: "client", labels: map[string]string{"app": "client"}, ips: []string{"172.17.0.20", "fd00:17::20"}},
		{ns: "prod", name: "web2", labels: map[string]string{"app": "web"}, ips: []string{"172.17.0.23", "fd00:17::23"},
			ports: []cport{{"http", "TCP", 9001}}},
		{ns: "dev", name: "client", labels: map[string]string{"app": "client"}, ips: []string{"172.17.0.21", "fd00:17::21"}},
		{ns: "myproject", name: "client", ips: []string{"172.17.0.22", "fd00:17::22"}},
	}
	nsLabels := map[string]map[string]string{
		"default":   {},
		"prod":      {"purpose": "production"},
		"dev":       {"purpose": "dev"},
		"myproject": {"project": "myproject"},
	}
	return pods, nsLabels
}

// talkPolicies are the two policies of the talk this project started from,
// verbatim.
var talkPolicies = examples.TalkPolicies

// denyAllDefault isolates every pod in namespace default for ingress and
// admits nothing; egress stays open.
const denyAllDefault = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: default}
spec: {podSelector: {}, ingress: []}
`

func tcp(from, to string, port int, want bool) testkit.Probe {
	return testkit.Probe{From: from, To: to, Proto: "tcp", Port: port, Want: want}
}

func udp(from, to string, port int, want bool) testkit.Probe {
	return testkit.Probe{From: from, To: to, Proto: "udp", Port: port, Want: want}
}

func v6(p testkit.Probe) testkit.Probe { p.V6 = true; return p }

// TestPolicyVerdictsInKernel runs every case through the agent on both
// backends: the same matrix must hold for nftables and iptables.
func TestPolicyVerdictsInKernel(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) { policyVerdicts(t, backend) })
	}
}

func policyVerdicts(t *testing.T, backend string) {
	pods, nsLabels := policyPods()
	c := newPolicyCluster(t, pods, nsLabels, withBackend(backend))
	cases := []struct {
		name     string
		policies string
		probes   []testkit.Probe
	}{
		{"no policy: every pod reachable", "", []testkit.Probe{
			tcp("dev/client", "default/web", 8080, true),
			tcp("default/other", "default/db", 6379, true),
			udp("prod/client", "default/web", 5353, true),
			tcp("ext:10.0.1.5", "default/db", 80, true),
			tcp("default/db", "ext:10.0.1.5", 80, true),
			v6(tcp("dev/client", "default/web", 8080, true)),
			v6(tcp("ext:fd00:e::5", "default/web", 8080, true)),
			v6(tcp("node", "default/web", 8080, true)),
		}},
		{"talk policies (web-allow-prod, test-network-policy)", talkPolicies, []testkit.Probe{
			// web-allow-prod: only namespaces labelled purpose=production.
			tcp("prod/client", "default/web", 8080, true),
			udp("prod/client", "default/web", 5353, true),
			tcp("dev/client", "default/web", 8080, false),
			tcp("default/other", "default/web", 8080, false),
			tcp("ext:10.0.1.5", "default/web", 8080, false),
			v6(tcp("prod/client", "default/web", 8080, true)),
			v6(tcp("dev/client", "default/web", 8080, false)),
			// node <-> pod is always allowed.
			tcp("node", "default/web", 8080, true),
			tcp("node", "default/db", 80, true),
			tcp("default/db", "node", 80, true),
			// test-network-policy ingress: ipBlock minus except, OR namespace, OR pod selector, TCP 6379 only.
			tcp("ext:172.17.5.5", "default/db", 6379, true),
			tcp("ext:10.0.1.5", "default/db", 6379, false),
			tcp("dev/client", "default/db", 6379, true),       // 172.17.0.21 inside the ipBlock
			tcp("default/other", "default/db", 6379, false),   // 172.17.1.11 is in except
			tcp("default/frontend", "default/db", 6379, true), // in except, but role=frontend
			tcp("myproject/client", "default/db", 6379, true),
			tcp("prod/client", "default/db", 80, false),
			udp("myproject/client", "default/db", 6379, false),
			// test-network-policy egress: only 10.0.0.0/24 on TCP 5978.
			tcp("default/db", "ext:10.0.0.5", 5978, true),
			tcp("default/db", "ext:10.0.1.5", 5978, false),
			tcp("default/db", "ext:10.0.0.5", 80, false),
			udp("default/db", "ext:10.0.0.5", 5978, false),
			tcp("default/db", "default/web", 8080, false),
			// A pod the policies do not select is untouched.
			tcp("default/other", "prod/client", 80, true),
		}},
		{"deny all ingress in a namespace", denyAllDefault, []testkit.Probe{
			tcp("prod/client", "default/web", 8080, false),
			tcp("default/web", "default/db", 6379, false),
			v6(tcp("prod/client", "default/db", 6379, false)),
			tcp("default/web", "prod/client", 80, true), // egress is not isolated
			tcp("node", "default/web", 8080, true),
			tcp("default/web", "default/web", 8080, true), // a pod to itself
		}},
		{"default deny egress", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Egress]
`, []testkit.Probe{
			tcp("prod/client", "default/web", 8080, false),
			udp("prod/client", "ext:10.0.0.5", 5978, false),
			tcp("prod/client", "node", 80, true),
			tcp("default/web", "prod/client", 80, true), // prod ingress is not isolated
		}},
		{"named ports resolve per destination pod; UDP endPort ranges", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ports, namespace: default}
spec:
  podSelector:
    matchExpressions: [{key: app, operator: In, values: [web]}]
  ingress:
  - ports:
    - port: http
    - {protocol: UDP, port: 9000, endPort: 9002}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ports, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: http}]
`, []testkit.Probe{
			tcp("dev/client", "default/web", 8080, true), // http is 8080 on web
			tcp("dev/client", "default/web", 9001, false),
			udp("dev/client", "default/web", 9001, true),
			udp("dev/client", "default/web", 9003, false),
			udp("dev/client", "default/web", 5353, false),
			tcp("dev/client", "prod/web2", 9001, true), // http is 9001 on web2
			tcp("dev/client", "prod/web2", 8080, false),
			v6(tcp("dev/client", "prod/web2", 9001, true)),
		}},
		{"namespace and pod selector in one peer are ANDed", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: and, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {purpose: production}}
      podSelector: {matchLabels: {app: client}}
`, []testkit.Probe{
			tcp("prod/client", "default/web", 8080, true),
			tcp("prod/web2", "default/web", 8080, false),
			tcp("dev/client", "default/web", 8080, false),
		}},
		{"matchExpressions Exists across all namespaces", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: exists, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {}
      podSelector:
        matchExpressions: [{key: app, operator: Exists}]
`, []testkit.Probe{
			tcp("prod/client", "default/web", 8080, true),
			tcp("dev/client", "default/web", 8080, true),
			tcp("myproject/client", "default/web", 8080, false),
			tcp("default/other", "default/web", 8080, false),
			tcp("ext:172.17.5.5", "default/web", 8080, false),
		}},
		{"IPv6 ipBlock with except", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: v6block, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - ipBlock: {cidr: "fd00:e::/64", except: ["fd00:e::5/128"]}
`, []testkit.Probe{
			v6(tcp("ext:fd00:e::6", "default/web", 8080, true)),
			v6(tcp("ext:fd00:e::5", "default/web", 8080, false)),
			v6(tcp("prod/client", "default/web", 8080, false)),
			tcp("prod/client", "default/web", 8080, false),
		}},
		{"ClusterNetworkPolicy: Admin Deny beats a NetworkPolicy allow, Admin Accept beats its deny", denyAllDefault + `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-all, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 8080}]}]
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: no-dev-to-web}
spec:
  tier: Admin
  priority: 10
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  ingress: [{name: dev stays out, action: Deny, from: [{namespaces: {matchLabels: {purpose: dev}}}]}]
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: myproject-to-db}
spec:
  tier: Admin
  priority: 20
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {role: db}}}}
  ingress: [{action: Accept, from: [{namespaces: {matchLabels: {project: myproject}}}], protocols: [{tcp: {destinationPort: {number: 6379}}}]}]
`, []testkit.Probe{
			tcp("prod/client", "default/web", 8080, true), // the NetworkPolicy allows
			tcp("dev/client", "default/web", 8080, false), // Admin Deny first
			v6(tcp("dev/client", "default/web", 8080, false)),
			udp("dev/client", "default/web", 5353, false),
			tcp("myproject/client", "default/db", 6379, true), // Admin Accept over deny-all
			v6(tcp("myproject/client", "default/db", 6379, true)),
			tcp("myproject/client", "default/db", 80, false), // not its port: deny-all
			tcp("prod/client", "default/db", 6379, false),
			tcp("node", "default/web", 8080, true),
		}},
		{"ClusterNetworkPolicy: Admin Pass hands over to NetworkPolicy; Baseline Deny only where none selects", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-prod, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {purpose: production}}}]}]
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: web-gate}
spec:
  tier: Admin
  priority: 5
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  ingress:
  - {name: prod decides by NetworkPolicy, action: Pass, from: [{namespaces: {matchLabels: {purpose: production}}}]}
  - {action: Deny, from: [{namespaces: {}}]}
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: baseline-deny}
spec:
  tier: Baseline
  priority: 0
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]
`, []testkit.Probe{
			tcp("prod/client", "default/web", 8080, true), // Pass, then the NetworkPolicy allows
			v6(tcp("prod/client", "default/web", 8080, true)),
			tcp("dev/client", "default/web", 8080, false),   // Admin Deny after the Pass rule
			tcp("prod/client", "prod/web2", 9001, false),    // Pass, no NetworkPolicy: Baseline Deny
			tcp("prod/client", "default/db", 6379, false),   // no NetworkPolicy selects db: Baseline Deny
			tcp("ext:10.0.1.5", "default/db", 6379, true),   // not a peer of the Baseline rule
			tcp("ext:10.0.1.5", "default/web", 8080, false), // web is isolated by its NetworkPolicy
			tcp("node", "default/db", 6379, true),
		}},
		{"ClusterNetworkPolicy: Baseline Accept does not open a NetworkPolicy default deny", denyAllDefault + `---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: baseline}
spec:
  tier: Baseline
  priority: 3
  subject: {namespaces: {}}
  ingress:
  - {action: Accept, from: [{namespaces: {matchLabels: {purpose: production}}}]}
  - {action: Deny, from: [{namespaces: {}}]}
`, []testkit.Probe{
			tcp("prod/client", "default/web", 8080, false),   // selected by deny-all: Baseline never runs
			tcp("prod/client", "dev/client", 80, true),       // Baseline Accept
			tcp("myproject/client", "dev/client", 80, false), // Baseline Deny
			v6(tcp("myproject/client", "dev/client", 80, false)),
			tcp("ext:10.0.1.5", "dev/client", 80, true), // not a peer of either rule
			tcp("node", "dev/client", 80, true),         // the node is always allowed
		}},
		{"ClusterNetworkPolicy: Baseline Deny to nodes covers a pod's own node unless a NetworkPolicy isolates its egress", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-open, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{}]
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: no-nodes}
spec:
  tier: Baseline
  priority: 1
  subject: {namespaces: {}}
  egress: [{action: Deny, to: [{nodes: {}}]}]
`, []testkit.Probe{
			tcp("dev/client", "node", 80, false), // the input hook meets the Baseline tier
			v6(tcp("dev/client", "node", 8080, false)),
			udp("dev/client", "node", 5353, false),
			tcp("prod/client", "node", 80, true), // a NetworkPolicy selects it: Baseline never runs
			tcp("dev/client", "default/web", 8080, true),
		}},
		{"ClusterNetworkPolicy: Admin egress to networks, nodes, a named port and a UDP range", `
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: egress}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {}}
  egress:
  - {action: Deny, to: [{networks: [10.0.0.0/24, "fd00:e::5/128"]}]}
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: dev-no-node-http}
spec:
  tier: Admin
  priority: 2
  subject: {namespaces: {matchLabels: {purpose: dev}}}
  egress:
  - {action: Deny, to: [{nodes: {}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
  - {action: Deny, to: [{namespaces: {}}], protocols: [{udp: {destinationPort: {range: {start: 5000, end: 6000}}}}]}
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: prod-no-http}
spec:
  tier: Admin
  priority: 3
  subject: {namespaces: {matchLabels: {purpose: production}}}
  egress:
  - action: Deny
    to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}]
    protocols: [{destinationNamedPort: http}]
`, []testkit.Probe{
			tcp("default/db", "ext:10.0.0.5", 5978, false),
			tcp("default/db", "ext:10.0.1.5", 5978, true),
			v6(tcp("default/db", "ext:fd00:e::5", 80, false)),
			v6(tcp("default/db", "ext:fd00:e::6", 80, true)),
			tcp("dev/client", "node", 80, false), // the node's own address, over the input hook
			v6(tcp("dev/client", "node", 80, false)),
			tcp("dev/client", "node", 8080, true),
			tcp("prod/client", "node", 80, true),
			udp("dev/client", "default/web", 5353, false),
			tcp("dev/client", "default/web", 8080, true),
			tcp("prod/client", "default/web", 8080, false), // http is 8080 on web
			tcp("prod/client", "prod/web2", 9001, false),   // and 9001 on web2
			tcp("prod/client", "prod/web2", 8080, true),
			udp("prod/client", "default/web", 5353, true),
			tcp("prod/client", "default/db", 6379, true),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := c.setPolicies(tc.policies)
			if len(st.Problems)+len(st.DataplaneProblems) > 0 {
				t.Errorf("agent reports problems: %v %v", st.Problems, st.DataplaneProblems)
			}
			c.t = t
			c.run(tc.probes)
		})
	}
}

// waitError waits until the agent reports a sync error.
func (c *cluster) waitError() testkit.AgentStatus {
	c.t.Helper()
	for range 300 {
		if st, err := c.status(); err == nil && st.LastError != "" {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("agent never reported the broken manifest")
	return testkit.AgentStatus{}
}

func TestOddPoliciesAreEnforcedOrReported(t *testing.T) {
	pods, nsLabels := policyPods()
	c := newPolicyCluster(t, pods, nsLabels)

	t.Run("unknown protocol and undefined named port fail closed and are reported", func(t *testing.T) {
		c.t = t
		st := c.setPolicies(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: odd, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{protocol: ICMP, port: 8080}]
  - ports: [{port: no-such-port}]
  - from: [{ipBlock: {cidr: 172.17.0.0/24, except: [10.9.0.0/16]}}]
    ports: [{port: 8080}]
`)
		joined := strings.Join(st.Problems, "\n")
		if !strings.Contains(joined, "ICMP") || !strings.Contains(joined, "no-such-port") {
			t.Errorf("problems not reported: %q", joined)
		}
		c.run([]testkit.Probe{
			// The except outside its cidr removes nothing: the block still admits 172.17.0.0/24.
			tcp("prod/client", "default/web", 8080, true),
			// The ICMP rule and the unresolvable named port admit nothing; web stays isolated.
			tcp("default/other", "default/web", 8080, false), // 172.17.1.11
			tcp("prod/client", "default/web", 9001, false),
		})
	})

	t.Run("broken manifest keeps the last ruleset", func(t *testing.T) {
		c.t = t
		c.setPolicies(denyAllDefault)
		before, _ := c.status()
		c.writeManifest("policies.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {podSelectr: {}}\n")
		st := c.waitError()
		if !strings.Contains(st.LastError, "podSelectr") || st.Syncs != before.Syncs {
			t.Errorf("status after broken manifest = %+v", st)
		}
		c.run([]testkit.Probe{
			tcp("prod/client", "default/web", 8080, false),
			tcp("node", "default/web", 8080, true),
		})
		if c.agent.ProcessState != nil {
			t.Fatal("agent exited on a broken manifest")
		}
		// Fixing the file resumes syncing.
		c.writeManifest("policies.yaml", "")
		c.waitSynced(st.Syncs)
		c.run([]testkit.Probe{tcp("prod/client", "default/web", 8080, true)})
	})
}
