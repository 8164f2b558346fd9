package nft

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// bigSnapshot builds a cluster of `pods` pods in pods/100 namespaces on
// `nodes` nodes (the local node n1 gets pods/nodes of them), with `policies`
// policies spread evenly over the namespaces. Each policy selects one app label, allows ingress from the next
// app of its namespace and from namespaces of its team on TCP 80 and the
// named port http, and egress to an ipBlock with an except on UDP 53.
func bigSnapshot(pods, policies, nodes int) Snapshot {
	s := Snapshot{
		Node:         Node{Name: "n1", Addrs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	}
	nss := max(pods/100, 1)
	for n := 0; n < nss; n++ {
		s.Namespaces = append(s.Namespaces, Namespace{Name: fmt.Sprint("ns", n), Labels: map[string]string{"team": fmt.Sprint("t", n%10)}})
	}
	for i := 0; i < pods; i++ {
		node := fmt.Sprint("n", 1+int((uint32(i)*2654435761)>>8)%nodes)
		s.Pods = append(s.Pods, Pod{
			Namespace: fmt.Sprint("ns", i%nss), Name: fmt.Sprint("pod", i), Node: node,
			Labels: map[string]string{"app": fmt.Sprint("app", (i/nss)%10)},
			IPs:    []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i % 10), byte(i >> 8), byte(i)})},
			Ports:  []ContainerPort{{Name: "http", Protocol: "TCP", Port: int32(8000 + i%10)}},
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

// BenchmarkCompile measures Compile alone for 10,000 pods and 1,000 policies.
func BenchmarkCompile(b *testing.B) {
	s := bigSnapshot(10000, 1000, 100)
	var r Ruleset
	c0 := cpuTime()
	for b.Loop() {
		r = Compile(s)
	}
	b.ReportMetric(ms(cpuTime()-c0)/float64(b.N), "cpu-ms")
	b.ReportMetric(float64(len(r.Chains)), "chains")
	b.ReportMetric(float64(len(r.Sets)), "sets")
}

// TestBigSnapshotIsolatesLocalPods keeps the benchmark input meaningful.
func TestBigSnapshotIsolatesLocalPods(t *testing.T) {
	s := bigSnapshot(1000, 100, 10)
	local := 0
	for _, p := range s.Pods {
		if p.Node == s.Node.Name {
			local++
		}
	}
	r := Compile(s)
	if len(r.Problems) != 0 {
		t.Fatalf("problems: %v", r.Problems)
	}
	m, _ := r.Set(mapIngress4)
	if len(m.Elems) != local || local == 0 {
		t.Errorf("ingress map has %d local pods, want %d", len(m.Elems), local)
	}
	if _, ok := r.Chain(policyChainName(dirIngress, "ns0/pol0")); !ok {
		t.Errorf("policy ns0/pol0 selects local pods but has no chain")
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cpuTime is the process's user+system CPU time: on a loaded machine wall
// time swings, CPU time much less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
