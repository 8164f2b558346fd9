package main

import (
	"fmt"
	"net/netip"

	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The simulated cluster. The node under test owns 10.0.0.0/16; other nodes
// own 10.N.0.0/16. The two real pods sit in the node's range; so do the
// first ten generated pods of every namespace, one per app label (they have
// no veth: they make the node's table as large as a busy node's, with every
// policy selecting some local pod and therefore compiled).
const (
	nodeName    = "bench-node"
	nodeAddr    = "192.168.77.1"
	nodeCIDR    = "10.0.0.0/16"
	clusterCIDR = "10.0.0.0/8"

	serverIP = "10.0.0.10"
	clientIP = "10.0.0.11"
	// serverNS and clientNS are production namespaces of the generated
	// cluster (even index), so the policies below apply to the real pods.
	serverNS = "ns0"
	clientNS = "ns2"

	testPort   = 5201 // the server's container port named "bench": allowed only by policy
	deniedPort = 5202 // served too, allowed by no policy
)

var (
	tcp = corev1.ProtocolTCP
	udp = corev1.ProtocolUDP
)

// snapshot builds a cluster of pods pods (the server and the client among
// them) in pods/100 namespaces plus "monitoring", and policies policies,
// ten shapes per namespace:
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
//     5432 and the named port bench, plus egress to 172.16.0.0/12 on TCP 443.
//
// The server (ns0, app0, db) is selected for ingress by app0-*,
// monitoring-* and tier-*; the client (ns2, app2, frontend) for egress by
// app2-* and tier-*. Only tier-* allows client -> server on testPort, and
// it sorts last, so a new connection walks the other policies first.
func snapshot(pods, policies int) policy.Snapshot {
	s := policy.Snapshot{
		Node: policy.Node{Name: nodeName, Addrs: []netip.Addr{netip.MustParseAddr(nodeAddr)},
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix(nodeCIDR)}},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(clusterCIDR)},
	}
	nss := max(pods/100, 3)
	for n := range nss {
		purpose := "production"
		if n%2 == 1 {
			purpose = "staging"
		}
		s.Namespaces = append(s.Namespaces, policy.Namespace{Name: fmt.Sprint("ns", n),
			Labels: map[string]string{"team": fmt.Sprint("t", team(n)), "purpose": purpose}})
	}
	s.Namespaces = append(s.Namespaces, policy.Namespace{Name: "monitoring", Labels: map[string]string{"purpose": "monitoring"}})
	s.Pods = append(s.Pods, realPods()...)
	for i := range max(pods-2, 0) {
		p := policy.Pod{
			Namespace: fmt.Sprint("ns", i%nss), Name: fmt.Sprint("pod", i),
			Labels: map[string]string{"app": fmt.Sprint("app", (i/nss)%10), "role": []string{"frontend", "backend", "db"}[i%3]},
			Ports: []policy.ContainerPort{{Name: "http", Protocol: "TCP", Port: 8080},
				{Name: "metrics", Protocol: "TCP", Port: 9090}, {Name: "dns", Protocol: "UDP", Port: 53}},
		}
		local := i/nss < 10
		if i%97 == 96 && !local {
			p.Namespace = "monitoring"
		}
		if local {
			p.Node = nodeName
			k := i + 256 // 10.0.1.0 and up: clear of the real pods
			p.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(k >> 8), byte(k)})}
		} else {
			n, k := 1+i%99, i/99
			p.Node = fmt.Sprint("node", n)
			p.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, byte(n), byte(k >> 8), byte(k)})}
		}
		s.Pods = append(s.Pods, p)
	}
	for j := range policies {
		s.Policies = append(s.Policies, netpol(j, j%nss, (j/nss)%10))
	}
	return s
}

// realPods are the two pods wired by the plugin.
func realPods() []policy.Pod {
	return []policy.Pod{
		{Namespace: serverNS, Name: "bench-server", Node: nodeName,
			Labels: map[string]string{"app": "app0", "role": "db"},
			IPs:    []netip.Addr{netip.MustParseAddr(serverIP)},
			Ports: []policy.ContainerPort{{Name: "bench", Protocol: "TCP", Port: testPort},
				{Name: "http", Protocol: "TCP", Port: 8080}}},
		{Namespace: clientNS, Name: "bench-client", Node: nodeName,
			Labels: map[string]string{"app": "app2", "role": "frontend"},
			IPs:    []netip.Addr{netip.MustParseAddr(clientIP)}},
	}
}

func netpol(j, n, k int) *networkingv1.NetworkPolicy {
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
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: in("purpose", "monitoring")}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: named("metrics")}},
			}},
		}}
	case 8:
		benchPorts := []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: num(5432)}, {Protocol: &tcp, Port: named("bench")}}
		return &networkingv1.NetworkPolicy{ObjectMeta: meta("tier"), Spec: networkingv1.NetworkPolicySpec{
			PodSelector: *in("role", "db", "frontend"),
			PolicyTypes: both,
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: teams(t, t+1), PodSelector: match("role", "frontend")}},
				Ports: benchPorts,
			}},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: teams(t, t+9), PodSelector: match("role", "db")}}, Ports: benchPorts},
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "172.16.0.0/12"}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: num(443)}}},
			},
		}}
	}
	end := int32(9100)
	p := &networkingv1.NetworkPolicy{ObjectMeta: meta(fmt.Sprint("app", k)), Spec: networkingv1.NetworkPolicySpec{
		PodSelector: *match("app", fmt.Sprint("app", k)),
		PolicyTypes: both,
		Ingress: []networkingv1.NetworkPolicyIngressRule{
			{From: []networkingv1.NetworkPolicyPeer{{PodSelector: match("role", "frontend")}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: num(80)}, {Protocol: &tcp, Port: named("http")}}},
			{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: teams(t), PodSelector: match("app", fmt.Sprint("app", (k+1)%10))}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: num(9000), EndPort: &end}}},
			{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "172.16.0.0/12", Except: []string{fmt.Sprintf("172.16.%d.0/24", j%256)}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: num(443)}}},
		},
		Egress: []networkingv1.NetworkPolicyEgressRule{
			{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{fmt.Sprintf("10.%d.0.0/16", 1+j%99)}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: num(53)}, {Protocol: &tcp, Port: num(53)}}},
			{To: []networkingv1.NetworkPolicyPeer{{PodSelector: match("role", "db")}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: num(5432)}}},
		},
	}}
	if k%4 == 3 {
		p.Spec.PolicyTypes = p.Spec.PolicyTypes[:1]
		p.Spec.Egress = nil
	}
	return p
}

func match(k, v string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
}

func in(k string, vs ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: k, Operator: metav1.LabelSelectorOpIn, Values: vs}}}
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
	sel := in("team", vs...)
	sel.MatchLabels = map[string]string{"purpose": "production"}
	return sel
}

func num(p int32) *intstr.IntOrString {
	v := intstr.FromInt32(p)
	return &v
}

func named(n string) *intstr.IntOrString {
	v := intstr.FromString(n)
	return &v
}
