package cluster

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kubectl runs kubectl with the admin kubeconfig in the control plane's
// namespace.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return c.Exec(ctx, c.Binaries.Kubectl, append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
}

// Install applies a CNI's manifest as a user would (`kubectl apply -f`)
// and waits until every node is Ready and every pod of kube-system runs
// and is ready.
func (c *Cluster) Install(ctx context.Context, manifest string) error {
	out, err := c.Kubectl(ctx, "apply", "-f", manifest)
	if err != nil {
		return err
	}
	c.logf("kubectl apply -f %s:\n%s", manifest, strings.TrimSpace(out))
	return c.WaitReady(ctx, 5*time.Minute)
}

// ApplyCRD applies a CustomResourceDefinition manifest as it is
// (server-side, so the object does not also carry a copy of itself in a
// last-applied annotation) and waits until it is Established.
func (c *Cluster) ApplyCRD(ctx context.Context, manifest string) error {
	out, err := c.Kubectl(ctx, "apply", "--server-side", "-f", manifest)
	if err != nil {
		return err
	}
	c.logf("kubectl apply --server-side -f %s: %s", manifest, strings.TrimSpace(out))
	_, err = c.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=1m", "-f", manifest)
	return err
}

//go:embed coredns.yaml
var corednsManifest []byte

// InstallDNS applies the cluster's DNS add-on (CoreDNS at the kube-dns
// Service, as kubeadm and kind install it; its image must have been
// imported) and waits until it is ready. It needs the CNI in place.
func (c *Cluster) InstallDNS(ctx context.Context) error {
	path := filepath.Join(c.Dir, "coredns.yaml")
	if err := os.WriteFile(path, corednsManifest, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := c.Kubectl(ctx, "apply", "-f", path); err != nil {
		return err
	}
	return c.WaitReady(ctx, 3*time.Minute)
}

// WaitReady waits until every node is Ready and every kube-system pod is
// Running and ready.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, "nodes and kube-system pods ready", timeout, time.Second, func() error {
		nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(nodes.Items) < len(c.Nodes) {
			return fmt.Errorf("%d of %d nodes registered", len(nodes.Items), len(c.Nodes))
		}
		for _, n := range nodes.Items {
			if !nodeReady(&n) {
				return fmt.Errorf("node %s not Ready", n.Name)
			}
		}
		pods, err := c.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(pods.Items) == 0 {
			return fmt.Errorf("no kube-system pods yet")
		}
		for _, p := range pods.Items {
			if !podReady(&p) {
				return fmt.Errorf("pod kube-system/%s not ready (%s)", p.Name, p.Status.Phase)
			}
		}
		return nil
	})
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
