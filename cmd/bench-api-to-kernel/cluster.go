package main

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/integration/kube"
	"github.com/weir-cni/weir/internal/synth"
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

// populate registers the node, the namespaces, the pods (with IPs, as
// after CNI ADD) and the policies of synth.Cluster, 100 of its pods on
// the node. It returns the pod the benchmark toggles.
func populate(ctx context.Context, kc *kube.Cluster, o options) (target, error) {
	c := kc.Client
	s := synth.Cluster(synth.Options{Pods: o.pods, Policies: o.policies, Local: 1})
	objs := synth.ObjectsOf(s)
	if _, err := kube.CreateNode(ctx, c, nodeName, objs.Node.Spec.PodCIDRs, synth.NodeAddr); err != nil {
		return target{}, err
	}
	for _, ns := range objs.Namespaces {
		if _, err := kube.CreateNamespace(ctx, c, ns.Name, ns.Labels); err != nil {
			return target{}, err
		}
	}
	err := kube.Parallel(ctx, len(objs.Pods), 32, func(ctx context.Context, i int) error {
		p := objs.Pods[i]
		var ips []string
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		hostIP := "" // as the kubelet writes it; kube-router (-peer) finds its node's pods by it
		if p.Spec.NodeName == nodeName {
			hostIP = synth.NodeAddr
		}
		_, err := kube.CreatePod(ctx, c, kube.Pod{Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName,
			Labels: p.Labels, IPs: ips, Ports: p.Spec.Containers[0].Ports, HostIP: hostIP})
		return err
	})
	if err != nil {
		return target{}, fmt.Errorf("pods: %w", err)
	}
	err = kube.Parallel(ctx, len(objs.Policies), 32, func(ctx context.Context, i int) error {
		_, err := kube.CreatePolicy(ctx, c, objs.Policies[i])
		return err
	})
	if err != nil {
		return target{}, fmt.Errorf("policies: %w", err)
	}
	for _, p := range s.Pods {
		if p.Node == nodeName && p.Labels["app"] == "app0" && p.Labels["role"] == "backend" {
			return target{namespace: p.Namespace, name: p.Name, labels: p.Labels, ip: p.IPs[0]}, nil
		}
	}
	return target{}, fmt.Errorf("no local app0 backend pod among %d pods", len(s.Pods))
}

// labelChanges flips the target pod's app label between a selected and an
// unselected value and times each API write until the pod's address enters
// or leaves the egress-isolation map in the node's kernel.
func labelChanges(ctx context.Context, kc *kube.Cluster, nodePath string, pod target, n int) ([]time.Duration, error) {
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
	ip := pod.ip
	present := func() (bool, error) {
		set, err := conn.GetSetByName(table, "egress-pods4")
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
	return toggleApp(ctx, kc, pod, n, present, nil)
}

// toggleApp flips the target pod's app label between an unselected value
// and app0, n times, and times each API write until present (the pod's
// membership in the node's kernel state for the app0 policies) follows.
// settle, if not nil, runs untimed after each change: it waits for the
// rest of the sync that made present follow, so that the next write does
// not queue behind it.
func toggleApp(ctx context.Context, kc *kube.Cluster, pod target, n int, present func() (bool, error), settle func() error) ([]time.Duration, error) {
	was, err := present()
	if err != nil {
		return nil, err
	}
	if !was {
		return nil, fmt.Errorf("pod %s/%s (%s) is not isolated at start", pod.namespace, pod.name, pod.ip)
	}
	var out []time.Duration
	for i := 0; i < n; i++ {
		app := "unselected"
		if i%2 == 1 {
			app = "app0"
		}
		want := app == "app0"
		p, err := kc.Client.CoreV1().Pods(pod.namespace).Get(ctx, pod.name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		p.Labels = maps.Clone(pod.labels)
		p.Labels["app"] = app
		t0 := time.Now() // the write itself
		if _, err := kc.Client.CoreV1().Pods(pod.namespace).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
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
			if time.Since(t0) > time.Minute { // kube-router (-peer) takes ~15s at 10,000 pods
				return nil, fmt.Errorf("change %d not in the kernel after a minute", i)
			}
			time.Sleep(200 * time.Microsecond)
		}
		if settle != nil {
			if err := settle(); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
