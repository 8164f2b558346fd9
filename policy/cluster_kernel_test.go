//go:build integration

package policy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weir-cni/weir/nft"
	"github.com/weir-cni/weir/ruleset"
)

// tierPolicies are NetworkPolicies and ClusterNetworkPolicies of both
// tiers for the pods of TestTiersInKernel: every action of each tier
// against NetworkPolicy.
const tierPolicies = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: shop, name: web-from-pods}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: shop, name: api-deny}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress]
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: dev-out}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {matchLabels: {team: dev}}}
  egress:
  - {action: Deny, to: [{networks: [172.17.0.5/32]}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
  - {name: no kubelet, action: Deny, to: [{nodes: {matchLabels: {role: worker}}}], protocols: [{tcp: {destinationPort: {number: 10250}}}]}
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: deny-dev-web}
spec:
  tier: Admin
  priority: 10
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  ingress:
  - {action: Deny, from: [{namespaces: {matchLabels: {team: dev}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: mon}
spec:
  tier: Admin
  priority: 20
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: cache}}}}
  ingress:
  - {name: ops passes, action: Pass, from: [{namespaces: {matchLabels: {team: ops}}}]}
  - {action: Deny, from: [{namespaces: {}}]}
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: ops-api}
spec:
  tier: Admin
  priority: 30
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: api}}}}
  ingress:
  - {action: Accept, from: [{namespaces: {matchLabels: {team: ops}}}]}
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: api-accept}
spec:
  tier: Baseline
  priority: 5
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: api}}}}
  ingress:
  - {action: Accept, from: [{namespaces: {matchLabels: {team: dev}}}]}
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: shop-default}
spec:
  tier: Baseline
  priority: 10
  subject: {namespaces: {matchLabels: {team: shop}}}
  ingress:
  - {action: Deny, from: [{namespaces: {matchLabels: {team: dev}}}]}
`

// TestTiersInKernel wires pods around a node namespace, applies a ruleset
// of both ClusterNetworkPolicy tiers and NetworkPolicies through netlink,
// and checks that real TCP and UDP probes, IPv4 and IPv6, pod to pod, pod
// to outside and pod to its node, are allowed or dropped as the API says
// and as Trace says, and that the rules that decided counted them.
func TestTiersInKernel(t *testing.T) {
	n := routerNS(t, "weirt-tier-")
	node, nodePath := n.Name, n.Path()
	pods := []*kpod{
		{pod: Pod{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"}}, addr: "10.0.0.10/24", gw: "10.0.0.1/24",
			addr6: "fd00:0::10/64", gw6: "fd00:0::1/64"},
		{pod: Pod{Namespace: "shop", Name: "api", Labels: map[string]string{"app": "api"}}, addr: "10.0.1.10/24", gw: "10.0.1.1/24"},
		{pod: Pod{Namespace: "shop", Name: "cache", Labels: map[string]string{"app": "cache"}}, addr: "10.0.2.10/24", gw: "10.0.2.1/24"},
		{pod: Pod{Namespace: "monitoring", Name: "prom"}, addr: "10.0.3.10/24", gw: "10.0.3.1/24",
			addr6: "fd00:3::10/64", gw6: "fd00:3::1/64"},
		{pod: Pod{Namespace: "dev", Name: "tool"}, addr: "10.0.4.10/24", gw: "10.0.4.1/24",
			addr6: "fd00:4::10/64", gw6: "fd00:4::1/64"},
		{pod: Pod{Namespace: "shop", Name: "blog", Labels: map[string]string{"app": "blog"}}, addr: "10.0.5.10/24", gw: "10.0.5.1/24"},
		{pod: Pod{Namespace: "ext", Name: "outside"}, addr: "172.17.0.5/24", gw: "172.17.0.1/24"},
	}
	nodeAddr := netip.MustParseAddr("10.0.4.1") // the gateway of tool's veth: one of the node's addresses
	snap := Snapshot{
		Node: Node{Name: "n1", Addrs: []netip.Addr{nodeAddr}},
		Nodes: []PeerNode{{Name: "n1", Labels: map[string]string{"role": "worker"}, Addrs: []netip.Addr{nodeAddr}},
			{Name: "n2", Labels: map[string]string{"role": "infra"}, Addrs: []netip.Addr{netip.MustParseAddr("192.168.1.20")}}},
		Namespaces: []Namespace{{Name: "shop", Labels: map[string]string{"team": "shop"}},
			{Name: "monitoring", Labels: map[string]string{"team": "ops"}}, {Name: "dev", Labels: map[string]string{"team": "dev"}}},
		PodInterfacePrefix: "veth",
	}
	snap.Pods = wireAll(t, node, pods)
	snap.Policies, snap.ClusterPolicies = parseTierPolicies(t, tierPolicies)
	r := Compile(snap)
	if len(r.Problems) > 0 {
		t.Fatalf("problems: %v", r.Problems)
	}
	a, err := nft.NewNetlinkApplier(nodePath)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Apply(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	by := map[string]*kpod{"node": {netns: n}}
	for _, p := range pods {
		by[p.pod.Name] = p
	}
	accept, drop := ruleset.VerdictAccept, ruleset.VerdictDrop
	cases := []struct {
		from, to string
		proto    string
		port     int
		want     ruleset.VerdictKind
		v6       bool
	}{
		{"tool", "web", "tcp", 80, drop, false}, // Admin Deny beats a NetworkPolicy allow
		{"tool", "web", "tcp", 80, drop, true},
		{"prom", "web", "tcp", 80, accept, false}, // NetworkPolicy allows what Admin does not deny
		{"prom", "web", "tcp", 80, accept, true},
		{"tool", "web", "tcp", 81, accept, false},   // Baseline Deny does not apply under a NetworkPolicy
		{"prom", "cache", "tcp", 80, accept, false}, // Admin Pass: to NetworkPolicy (none), Baseline (no match), allow
		{"prom", "cache", "udp", 53, accept, false},
		{"web", "cache", "tcp", 80, drop, false},      // Admin Deny after the Pass rule
		{"tool", "cache", "udp", 53, drop, false},     // the same, UDP
		{"prom", "api", "tcp", 80, accept, false},     // Admin Accept beats a NetworkPolicy default deny
		{"web", "api", "tcp", 80, drop, false},        // NetworkPolicy default deny
		{"tool", "api", "tcp", 80, drop, false},       // Baseline Accept does not apply under a NetworkPolicy
		{"tool", "blog", "tcp", 80, drop, false},      // Baseline Deny where no NetworkPolicy selects
		{"web", "blog", "tcp", 80, accept, false},     // Baseline lets other peers through
		{"tool", "outside", "tcp", 80, drop, false},   // Admin egress Deny to a network
		{"tool", "outside", "tcp", 81, accept, false}, // another port
		{"tool", "node", "tcp", 10250, drop, false},   // Admin egress Deny to a node peer: its own node (input hook)
		{"tool", "node", "tcp", 22, accept, false},    // other ports of its node
		{"prom", "node", "tcp", 10250, accept, false}, // pods the policy does not hold
	}
	counted := map[string]bool{}
	for _, tc := range cases {
		name := fmt.Sprintf("%s to %s %s/%d v6=%v", tc.from, tc.to, tc.proto, tc.port, tc.v6)
		t.Run(name, func(t *testing.T) {
			src, dst := by[tc.from], by[tc.to]
			fam := 0
			if tc.v6 {
				fam = 1
			}
			to := nodeAddr
			if tc.to != "node" {
				to = dst.pod.IPs[fam]
			}
			pkt := ruleset.Packet{Src: src.pod.IPs[fam], Dst: to, Proto: ruleset.ProtoTCP, DPort: uint16(tc.port),
				InIface: "veth0", ToHost: tc.to == "node"}
			if tc.proto == "udp" {
				pkt.Proto = ruleset.ProtoUDP
			}
			traceAndProbe(t, r, src, dst, pkt, tc.proto, tc.want, counted)
		})
	}
	values, err := a.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Counters {
		if !strings.HasPrefix(c.Name, prefixCluster) {
			continue
		}
		switch v := values[c.Name]; {
		case counted[c.Name] && v.Packets == 0:
			t.Errorf("counter %s counted nothing, but decided a probe", c.Name)
		case !counted[c.Name] && v.Packets != 0:
			t.Errorf("counter %s counted %d packets, but decided no probe", c.Name, v.Packets)
		}
	}
}

// parseTierPolicies splits YAML documents into NetworkPolicies and
// ClusterNetworkPolicies by kind.
func parseTierPolicies(t *testing.T, docs string) ([]*networkingv1.NetworkPolicy, []*cnp.ClusterNetworkPolicy) {
	t.Helper()
	var nps []*networkingv1.NetworkPolicy
	var cnps []*cnp.ClusterNetworkPolicy
	for _, doc := range strings.Split(docs, "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		var err error
		if meta.Kind == "ClusterNetworkPolicy" {
			p := &cnp.ClusterNetworkPolicy{}
			err, cnps = yaml.UnmarshalStrict([]byte(doc), p), append(cnps, p)
		} else {
			p := &networkingv1.NetworkPolicy{}
			err, nps = yaml.UnmarshalStrict([]byte(doc), p), append(nps, p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return nps, cnps
}
