package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weir-cni/weir/integration/kube"
	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/internal/testkit"
)

const nodeName = synth.NodeName

// target is the local pod whose labels the benchmark toggles: app=app0
// puts it in the egress-pods4 map (policies app0-* isolate its egress);
// any other app takes it out (it is role=backend, which tier-* do not
// select). Ingress does not do: monitoring-* isolate every pod's.
type target struct {
	namespace, name string
	labels          map[string]string
	ip              netip.Addr
}

// cluster is one size's API server, populated, and the node namespace the
// agents run in.
type cluster struct {
	size   size
	kc     *kube.Cluster
	node   *testkit.NS
	target target
}

// newCluster starts an API server and registers sz's cluster.
func newCluster(ctx context.Context, sz size, build bool) (_ *cluster, err error) {
	kc, err := kube.Start(ctx, kube.Options{Build: build})
	if err != nil {
		return nil, err
	}
	cl := &cluster{size: sz, kc: kc}
	defer func() {
		if err != nil {
			cl.stop()
		}
	}()
	if cl.node, err = testkit.NewNS("weirkb"); err != nil {
		return nil, err
	}
	start := time.Now()
	var local int
	if cl.target, local, err = populate(ctx, kc, sz); err != nil {
		return nil, err
	}
	fmt.Printf("== %s: %d pods on %d nodes (%d local), %d policies registered in %v\n", sz.name, sz.Pods, sz.Nodes+1,
		local, sz.Policies, time.Since(start).Round(time.Millisecond))
	return cl, nil
}

func (cl *cluster) stop() {
	if cl.node != nil {
		_ = cl.node.Delete()
	}
	cl.kc.Stop()
}

// populate registers the nodes, the namespaces, the pods (with IPs, as
// after CNI ADD) and the policies of synth.Cluster. It returns the pod the
// benchmark toggles and how many pods run on the node.
func populate(ctx context.Context, kc *kube.Cluster, sz size) (target, int, error) {
	c := kc.Client
	s := synth.Cluster(sz.Options)
	objs := synth.ObjectsOf(s)
	if _, err := kube.CreateNode(ctx, c, nodeName, objs.Node.Spec.PodCIDRs, synth.NodeAddr); err != nil {
		return target{}, 0, err
	}
	err := kube.Parallel(ctx, sz.Nodes, 32, func(ctx context.Context, i int) error {
		n := i + 1
		_, err := kube.CreateNode(ctx, c, fmt.Sprint("node", n), []string{synth.OtherNodeCIDR(n, sz.Nodes).String()},
			fmt.Sprintf("192.168.%d.%d", 78+n/256, n%256))
		return err
	})
	if err != nil {
		return target{}, 0, fmt.Errorf("nodes: %w", err)
	}
	for _, ns := range objs.Namespaces {
		if _, err := kube.CreateNamespace(ctx, c, ns.Name, ns.Labels); err != nil {
			return target{}, 0, err
		}
	}
	err = kube.Parallel(ctx, len(objs.Pods), 32, func(ctx context.Context, i int) error {
		return createPod(ctx, c, objs.Pods[i])
	})
	if err != nil {
		return target{}, 0, fmt.Errorf("pods: %w", err)
	}
	err = kube.Parallel(ctx, len(objs.Policies), 32, func(ctx context.Context, i int) error {
		_, err := kube.CreatePolicy(ctx, c, objs.Policies[i])
		return err
	})
	if err != nil {
		return target{}, 0, fmt.Errorf("policies: %w", err)
	}
	var t *target
	local := 0
	for _, p := range s.Pods {
		if p.Node != nodeName {
			continue
		}
		local++
		if t == nil && p.Labels["app"] == "app0" && p.Labels["role"] == "backend" {
			t = &target{namespace: p.Namespace, name: p.Name, labels: p.Labels, ip: p.IPs[0]}
		}
	}
	if t == nil {
		return target{}, 0, fmt.Errorf("no local app0 backend pod among %d pods", len(s.Pods))
	}
	return *t, local, nil
}

// createPod registers p (a synth object) as after CNI ADD: with its IPs,
// and, on the node, the node's address as its hostIP, as the kubelet
// writes it; kube-router (-peer) finds its node's pods by it.
func createPod(ctx context.Context, c kubernetes.Interface, p *corev1.Pod) error {
	var ips []string
	for _, ip := range p.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	hostIP := ""
	if p.Spec.NodeName == nodeName {
		hostIP = synth.NodeAddr
	}
	_, err := kube.CreatePod(ctx, c, kube.Pod{Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName,
		Labels: p.Labels, IPs: ips, Ports: p.Spec.Containers[0].Ports, HostIP: hostIP})
	return err
}

// extraPolicy isolates the egress of the target's pods whose app is
// unselected: added, it puts the target (relabelled so) in the
// egress-isolation map; deleted, it takes it out.
func extraPolicy(t target) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: t.namespace, Name: "bench-extra"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "unselected"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		},
	}
}
