package iptables

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// bigSnapshot (copied from nft's bench_test.go) builds a cluster of `pods` pods in pods/100 namespaces on
// `nodes` nodes (the local node n1 gets pods/nodes of them), with `policies`
// policies spread evenly over the namespaces. Each policy selects one app label, allows ingress from the next
// app of its namespace and from namespaces of its team on TCP 80 and the
// named port http, and egress to an ipBlock with an except on UDP 53.
func bigSnapshot(pods, policies, nodes int) policy.Snapshot {
	s := policy.Snapshot{
		Node:         policy.Node{Name: "n1", Addrs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	}
	nss := max(pods/100, 1)
	for n := 0; n < nss; n++ {
		s.Namespaces = append(s.Namespaces, policy.Namespace{Name: fmt.Sprint("ns", n), Labels: map[string]string{"team": fmt.Sprint("t", n%10)}})
	}
	for i := 0; i < pods; i++ {
		node := fmt.Sprint("n", 1+int((uint32(i)*2654435761)>>8)%nodes)
		s.Pods = append(s.Pods, policy.Pod{
			Namespace: fmt.Sprint("ns", i%nss), Name: fmt.Sprint("pod", i), Node: node,
			Labels: map[string]string{"app": fmt.Sprint("app", (i/nss)%10)},
			IPs:    []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i % 10), byte(i >> 8), byte(i)})},
			Ports:  []policy.ContainerPort{{Name: "http", Protocol: "TCP", Port: int32(8000 + i%10)}},
		})
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	for j := 0; j < policies; j++ {
		ns := fmt.Sprint("ns", j%nss)
		app := (j / nss) % 10
		s.Policies = append(s.Policies, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprint("pol", j)},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint("app", app)}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{
						{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint("app", (app+1)%10)}}},
						{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprint("t", j%10)}},
							PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "app0"}}},
					},
					Ports: []networkingv1.NetworkPolicyPort{
						{Protocol: &tcp, Port: ptr(intstr.FromInt32(80))},
						{Protocol: &tcp, Port: ptr(intstr.FromString("http"))},
					},
				}},
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "172.16.0.0/12", Except: []string{fmt.Sprintf("172.16.%d.0/24", j%256)}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: ptr(intstr.FromInt32(53))}},
				}},
			},
		})
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// BenchmarkRender measures Render for 10,000 pods and 1,000 policies and
// reports the size of the result: rules per family, a proxy for the
// per-packet cost of a new connection, which grows linearly here.
func BenchmarkRender(b *testing.B) {
	rs := policy.Compile(bigSnapshot(10000, 1000, 100))
	var v4 string
	for b.Loop() {
		v4, _ = Render(rs)
	}
	b.ReportMetric(float64(strings.Count(v4, "\n-A ")), "rules4")
	b.ReportMetric(float64(len(v4)), "bytes4")
}
