package synth

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/policy"
)

// The node a generated cluster is seen from owns NodeCIDR; other nodes own
// 10.N.0.0/16.
const (
	NodeName    = "bench-node"
	NodeAddr    = "192.168.77.1"
	NodeCIDR    = "10.0.0.0/16"
	ClusterCIDR = "10.0.0.0/8"
)

// Options size a generated cluster.
type Options struct {
	Pods, Policies int
	// Namespaces the pods and policies are spread over: pods/100 and at
	// least 3 when 0.
	Namespaces int
	// Local is how many of each namespace's first pods run on NodeName;
	// up to 10, they have one app label each, so that every app<K>-*
	// policy (below) selects a local pod and is compiled.
	Local int
	// TierPort is a named port the tier-* policies allow besides TCP 5432,
	// one no generated pod has: the caller adds the pods that do. None
	// when empty.
	TierPort string
	// ClusterPolicies is the number of ClusterNetworkPolicies (see
	// clusterPolicy); with any, the snapshot also lists 100 nodes.
	ClusterPolicies int
	// Nodes is the number of other nodes the non-local pods are spread
	// over: 99 when 0 (see OtherNodeCIDR).
	Nodes int
}

// The benchmarks' sizes: 10,000 pods and 1,000 policies on a node with 100
// local pods (one per namespace), or 1,000 in the dense variant (ten per
// namespace, one per app label, so that every policy is compiled); Huge is
// a large cluster seen from one of its nodes: 50,000 pods and 5,000
// policies over 100 namespaces, 200 local pods (two per namespace), the
// others spread over 1,000 nodes.
var (
	Big   = Options{Pods: 10000, Policies: 1000, Local: 1}
	Dense = Options{Pods: 10000, Policies: 1000, Local: 10}
	Huge  = Options{Pods: 50000, Policies: 5000, Namespaces: 100, Local: 2, Nodes: 1000}
)

// Cluster is the cluster of the benchmarks (a busy node: 10,000 pods and
// 1,000 policies at full size). Namespaces ns<N> are labelled with a team
// (two neighbouring namespaces, one production and one staging, share a
// team) and a purpose; a last namespace, monitoring, has a few pods and no
// policy. Pods have an app and a role label and the named ports http,
// metrics and dns. Policies are spread over the namespaces, ten shapes per
// namespace:
//
//   - app<K>-<j> (K = 0..7) select app=app<K>: ingress from role=frontend
//     pods of their namespace on TCP 80 and the named port http, from
//     app=app<K+1> pods of their team's production namespaces on TCP
//     9000-9100, from 172.16.0.0/12 minus one /24 on TCP 443; egress
//     (except K = 3 and 7, ingress-only) to 10.0.0.0/8 minus one /16 on UDP
//     and TCP 53 and to role=db pods of their namespace on TCP 5432;
//   - monitoring-<j> selects every pod ({}): ingress from namespaces with
//     purpose In (monitoring) on the named port metrics;
//   - tier-<j> selects role In (db, frontend): ingress from role=frontend
//     pods of the production namespaces of their team and the next, egress
//     to role=db pods of those of their team and the previous, both on TCP
//     5432 and TierPort, plus egress to 172.16.0.0/12 on TCP 443.
//
// Local pods have addresses from 10.0.1.0 up; the others are spread over
// o.Nodes (default 99) other nodes, node1 to node<o.Nodes>, each with
// addresses from its OtherNodeCIDR.
func Cluster(o Options) policy.Snapshot {
	s := policy.Snapshot{
		Node: policy.Node{Name: NodeName, Addrs: []netip.Addr{netip.MustParseAddr(NodeAddr)},
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix(NodeCIDR)}},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(ClusterCIDR)},
	}
	nss := o.Namespaces
	if nss == 0 {
		nss = max(o.Pods/100, 3)
	}
	for n := range nss {
		purpose := "production"
		if n%2 == 1 {
			purpose = "staging"
		}
		s.Namespaces = append(s.Namespaces, policy.Namespace{Name: fmt.Sprint("ns", n),
			Labels: map[string]string{"team": fmt.Sprint("t", team(n)), "purpose": purpose}})
	}
	s.Namespaces = append(s.Namespaces, policy.Namespace{Name: "monitoring", Labels: map[string]string{"purpose": "monitoring"}})
	others := o.Nodes
	if others == 0 {
		others = 99
	}
	if perNode := (o.Pods + others - 1) / others; others >= 255 && perNode > 256 {
		panic(fmt.Sprintf("synth: %d pods over %d nodes is %d a node, more than a /24 holds", o.Pods, others, perNode))
	}
	for i := range o.Pods {
		s.Pods = append(s.Pods, pod(i, nss, others, i/nss < o.Local))
	}
	for j := range o.Policies {
		s.Policies = append(s.Policies, netpol(j, j%nss, (j/nss)%10, o.TierPort))
	}
	if o.ClusterPolicies > 0 {
		s.Nodes = nodes()
	}
	for j := range o.ClusterPolicies {
		s.ClusterPolicies = append(s.ClusterPolicies, clusterPolicy(j))
	}
	return s
}

// pod is generated pod i of a cluster of nss namespaces and nodes other
// nodes.
func pod(i, nss, nodes int, local bool) policy.Pod {
	p := policy.Pod{
		Namespace: fmt.Sprint("ns", i%nss), Name: fmt.Sprint("pod", i),
		Labels: map[string]string{"app": fmt.Sprint("app", (i/nss)%10), "role": []string{"frontend", "backend", "db"}[i%3]},
		Ports: []policy.ContainerPort{{Name: "http", Protocol: "TCP", Port: 8080},
			{Name: "metrics", Protocol: "TCP", Port: 9090}, {Name: "dns", Protocol: "UDP", Port: 53}},
	}
	if i%97 == 96 && !local {
		p.Namespace = "monitoring"
	}
	if local {
		p.Node = NodeName
		k := i + 256 // 10.0.1.0 and up
		p.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(k >> 8), byte(k)})}
	} else {
		n := 1 + i%nodes
		p.Node = fmt.Sprint("node", n)
		a := OtherNodeCIDR(n, nodes).Addr().As4()
		k := i / nodes
		a[2] |= byte(k >> 8)
		a[3] = byte(k)
		p.IPs = []netip.Addr{netip.AddrFrom4(a)}
	}
	return p
}

// OtherNodeCIDR is the pod range of node<n> (1 <= n <= nodes) in a cluster
// of nodes other nodes: 10.<n>.0.0/16 up to 254 of them, 10.<1+n/256>.<n
// mod 256>.0/24 for more (up to 256 pods a node then, 64,000 nodes).
func OtherNodeCIDR(n, nodes int) netip.Prefix {
	if nodes < 255 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n), 0, 0}), 16)
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(1 + n/256), byte(n), 0}), 24)
}

var tcp, udp = corev1.ProtocolTCP, corev1.ProtocolUDP

// netpol is policy j, of shape k, in namespace ns<n>.
func netpol(j, n, k int, tierPort string) *networkingv1.NetworkPolicy {
	ns, t := fmt.Sprint("ns", n), team(n)
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%04d", name, j)}
	}
	both := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	switch k {
	case 9:
		return &networkingv1.NetworkPolicy{ObjectMeta: meta("monitoring"), Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: fixtures.In("purpose", "monitoring")}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: fixtures.Named("metrics")}},
			}},
		}}
	case 8:
		benchPorts := []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: fixtures.Port(5432)}}
		if tierPort != "" {
			benchPorts = append(benchPorts, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: fixtures.Named(tierPort)})
		}
		return &networkingv1.NetworkPolicy{ObjectMeta: meta("tier"), Spec: networkingv1.NetworkPolicySpec{
			PodSelector: *fixtures.In("role", "db", "frontend"),
			PolicyTypes: both,
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: teams(t, t+1), PodSelector: fixtures.Match("role", "frontend")}},
				Ports: benchPorts,
			}},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: teams(t, t+9), PodSelector: fixtures.Match("role", "db")}}, Ports: benchPorts},
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "172.16.0.0/12"}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: fixtures.Port(443)}}},
			},
		}}
	}
	p := &networkingv1.NetworkPolicy{ObjectMeta: meta(fmt.Sprint("app", k)), Spec: networkingv1.NetworkPolicySpec{
		PodSelector: *fixtures.Match("app", fmt.Sprint("app", k)),
		PolicyTypes: both,
		Ingress: []networkingv1.NetworkPolicyIngressRule{
			{From: []networkingv1.NetworkPolicyPeer{{PodSelector: fixtures.Match("role", "frontend")}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: fixtures.Port(80)}, {Protocol: &tcp, Port: fixtures.Named("http")}}},
			{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: teams(t), PodSelector: fixtures.Match("app", fmt.Sprint("app", (k+1)%10))}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: fixtures.Port(9000), EndPort: fixtures.Ptr(int32(9100))}}},
			{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "172.16.0.0/12", Except: []string{fmt.Sprintf("172.16.%d.0/24", j%256)}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: fixtures.Port(443)}}},
		},
		Egress: []networkingv1.NetworkPolicyEgressRule{
			{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{fmt.Sprintf("10.%d.0.0/16", 1+j%99)}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: fixtures.Port(53)}, {Protocol: &tcp, Port: fixtures.Port(53)}}},
			{To: []networkingv1.NetworkPolicyPeer{{PodSelector: fixtures.Match("role", "db")}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: fixtures.Port(5432)}}},
		},
	}}
	if k%4 == 3 {
		p.Spec.PolicyTypes = p.Spec.PolicyTypes[:1]
		p.Spec.Egress = nil
	}
	return p
}

// team is the team of namespace n: two neighbouring namespaces, one in
// production and one in staging, share a team.
func team(n int) int { return (n / 2) % 10 }

// teams selects the production namespaces of some teams (mod 10):
// matchLabels and matchExpressions together.
func teams(ts ...int) *metav1.LabelSelector {
	var vs []string
	for _, t := range ts {
		vs = append(vs, fmt.Sprint("t", t%10))
	}
	sel := fixtures.In("team", vs...)
	sel.MatchLabels = map[string]string{"purpose": "production"}
	return sel
}

// nodes are the generated cluster's nodes: NodeName and node1 to node99,
// every other one labelled role=infra, the others role=worker.
func nodes() []policy.PeerNode {
	out := make([]policy.PeerNode, 0, 100)
	for n := range 100 {
		name := fmt.Sprint("node", n)
		if n == 0 {
			name = NodeName
		}
		role := "worker"
		if n%2 == 1 {
			role = "infra"
		}
		out = append(out, policy.PeerNode{Name: name, Labels: map[string]string{"role": role},
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{192, 168, 77, byte(n + 1)})}})
	}
	return out
}

// clusterPolicy is ClusterNetworkPolicy j. Its subject is the pods of one
// app label in the namespaces of one team, (j mod 10, j/10 mod 10), so a
// pod is held by one policy in a hundred (ten of a thousand); its shape
// cycles every hundred policies through:
//
//   - 0: Admin, ingress Deny from staging namespaces on TCP 22, egress Deny
//     to 169.254.169.254/32;
//   - 1: Admin, ingress Pass from the pods of its team, then Deny from
//     staging namespaces on TCP 23;
//   - 2: Baseline, ingress Deny from staging namespaces, egress Accept to
//     10.0.0.0/8 on TCP 443;
//   - 3: Admin, egress Deny to role=infra nodes on TCP 10250.
func clusterPolicy(j int) *cnp.ClusterNetworkPolicy {
	t, k := j%10, (j/10)%10
	p := &cnp.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cnp-%04d", j)},
		Spec: cnp.ClusterNetworkPolicySpec{Tier: cnp.AdminTier, Priority: int32(j % 1000),
			Subject: cnp.ClusterNetworkPolicySubject{Pods: &cnp.NamespacedPod{
				NamespaceSelector: *fixtures.Match("team", fmt.Sprint("t", t)), PodSelector: *fixtures.Match("app", fmt.Sprint("app", k))}}}}
	staging := []cnp.ClusterNetworkPolicyIngressPeer{{Namespaces: fixtures.Match("purpose", "staging")}}
	tcpPort := func(n int32) []cnp.ClusterNetworkPolicyProtocol {
		return []cnp.ClusterNetworkPolicyProtocol{{TCP: &cnp.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnp.Port{Number: n}}}}
	}
	deny, accept, pass := cnp.ClusterNetworkPolicyRuleActionDeny, cnp.ClusterNetworkPolicyRuleActionAccept, cnp.ClusterNetworkPolicyRuleActionPass
	switch (j / 100) % 4 {
	case 0:
		p.Spec.Ingress = []cnp.ClusterNetworkPolicyIngressRule{{Action: deny, From: staging, Protocols: tcpPort(22)}}
		p.Spec.Egress = []cnp.ClusterNetworkPolicyEgressRule{{Action: deny, To: []cnp.ClusterNetworkPolicyEgressPeer{{Networks: []cnp.CIDR{"169.254.169.254/32"}}}}}
	case 1:
		p.Spec.Ingress = []cnp.ClusterNetworkPolicyIngressRule{
			{Action: pass, From: []cnp.ClusterNetworkPolicyIngressPeer{{Namespaces: fixtures.Match("team", fmt.Sprint("t", t))}}},
			{Action: deny, From: staging, Protocols: tcpPort(23)}}
	case 2:
		p.Spec.Tier = cnp.BaselineTier
		p.Spec.Ingress = []cnp.ClusterNetworkPolicyIngressRule{{Action: deny, From: staging}}
		p.Spec.Egress = []cnp.ClusterNetworkPolicyEgressRule{{Action: accept, To: []cnp.ClusterNetworkPolicyEgressPeer{{Networks: []cnp.CIDR{"10.0.0.0/8"}}}, Protocols: tcpPort(443)}}
	default:
		p.Spec.Egress = []cnp.ClusterNetworkPolicyEgressRule{{Action: deny,
			To: []cnp.ClusterNetworkPolicyEgressPeer{{Nodes: fixtures.Match("role", "infra")}}, Protocols: tcpPort(10250)}}
	}
	return p
}
