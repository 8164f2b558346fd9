package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weir-cni/weir/integration/kube"
)

const (
	nodeName   = "bench-node"
	namespaces = 100
	apps       = 50
)

// podIP spreads pods over 100 nodes' /16s in runs of 7, so each node holds
// pods of many namespaces and apps; node 0 is the one under test.
func podIP(i int) (string, string) {
	n, k := (i/7)%100, (i/700)*7+i%7
	return fmt.Sprintf("10.%d.%d.%d", n, k/250, k%250+1), fmt.Sprintf("node-%d", n)
}

// populate registers nodes, namespaces, pods (with IPs, as after CNI ADD)
// and policies. It returns the namespace/name of a local pod whose labels
// the benchmark toggles.
func populate(ctx context.Context, kc *kube.Cluster, o options) ([2]string, error) {
	c := kc.Client
	if _, err := kube.CreateNode(ctx, c, nodeName, []string{"10.0.0.0/16"}, "192.168.77.1"); err != nil {
		return [2]string{}, err
	}
	for i := 0; i < namespaces; i++ {
		labels := map[string]string{"team": fmt.Sprint("t", i%10), "env": []string{"prod", "dev"}[i%2]}
		if _, err := kube.CreateNamespace(ctx, c, fmt.Sprintf("ns%d", i), labels); err != nil {
			return [2]string{}, err
		}
	}
	err := kube.Parallel(ctx, o.pods, 32, func(ctx context.Context, i int) error {
		ip, node := podIP(i)
		if node == "node-0" {
			node = nodeName
		}
		_, err := kube.CreatePod(ctx, c, kube.Pod{Namespace: fmt.Sprintf("ns%d", i%namespaces), Name: fmt.Sprintf("p%d", i),
			Node: node, Labels: map[string]string{"app": fmt.Sprint("a", (i/namespaces)%apps), "tier": fmt.Sprint(i % 3)},
			IPs: []string{ip}, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}})
		return err
	})
	if err != nil {
		return [2]string{}, fmt.Errorf("pods: %w", err)
	}
	err = kube.Parallel(ctx, o.policies, 32, func(ctx context.Context, i int) error {
		_, err := kube.CreatePolicy(ctx, c, benchPolicy(i))
		return err
	})
	if err != nil {
		return [2]string{}, fmt.Errorf("policies: %w", err)
	}
	// Pod 0 is local (node-0 range) in ns0 with app=a0.
	return [2]string{"ns0", "p0"}, nil
}

// benchPolicy is policy i: it selects one app of one namespace and admits
// another app from namespaces of one team, an ipBlock with an except, on a
// named and a ranged port.
func benchPolicy(i int) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	http := intstr.FromString("http")
	p9000 := intstr.FromInt32(9000)
	end := int32(9100)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns%d", i%namespaces), Name: fmt.Sprintf("pol%d", i)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint("a", (i/namespaces)%apps)}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{
					{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprint("t", i%10)}},
						PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint("a", (i+1)%apps)}}},
					{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("172.%d.0.0/16", 16+i%16), Except: []string{fmt.Sprintf("172.%d.1.0/24", 16+i%16)}}},
				},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &http}, {Protocol: &tcp, Port: &p9000, EndPort: &end}},
			}},
		},
	}
}

// labelChanges flips the local pod's app label between a selected and an
// unselected value and times each API write until the pod's address enters
// or leaves the ingress-isolation map in the node's kernel.
func labelChanges(ctx context.Context, kc *kube.Cluster, nodePath string, pod [2]string, n int) ([]time.Duration, error) {
	fd, err := unix.Open(nodePath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	// One lasting socket in the node's namespace. With a socket opened per
	// poll (the library's default), the first poll after each "pod leaves
	// the policy" commit took 7-18 ms, whereas the kernel already held the
	// change; that wait was counted as agent latency.
	conn, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.CloseLasting() }()
	table := &nftables.Table{Name: "weir", Family: nftables.TableFamilyINet}
	ip := netip.MustParseAddr("10.0.0.1")
	present := func() (bool, error) {
		set, err := conn.GetSetByName(table, "ingress-pods4")
		if err != nil {
			return false, err
		}
		els, err := conn.GetSetElements(set)
		if err != nil {
			return false, err
		}
		for _, e := range els {
			if a, ok := netip.AddrFromSlice(e.Key); ok && a == ip {
				return true, nil
			}
		}
		return false, nil
	}
	was, err := present()
	if err != nil {
		return nil, err
	}
	if !was {
		return nil, fmt.Errorf("pod %s/%s (%s) is not isolated at start", pod[0], pod[1], ip)
	}
	var out []time.Duration
	for i := 0; i < n; i++ {
		app := "unselected"
		if i%2 == 1 {
			app = "a0"
		}
		want := app == "a0"
		p, err := kc.Client.CoreV1().Pods(pod[0]).Get(ctx, pod[1], metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		p.Labels = map[string]string{"app": app, "tier": "0"}
		t0 := time.Now() // the write itself
		if _, err := kc.Client.CoreV1().Pods(pod[0]).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			return nil, err
		}
		for {
			got, err := present()
			if err != nil {
				return nil, err
			}
			if got == want {
				out = append(out, time.Since(t0))
				break
			}
			if time.Since(t0) > 30*time.Second {
				return nil, fmt.Errorf("change %d not in the kernel after 30s", i)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	return out, nil
}
