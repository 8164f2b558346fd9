//go:build integration

package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weir-cni/weir/internal/testkit"
)

// helperEnv makes the test binary, re-executed inside a namespace, act as
// a client-go program reading the kubeconfig the variable names.
const helperEnv = "WEIR_KUBE_TEST_CLIENT"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(clientMain(path))
	}
	os.Exit(m.Run())
}

// clientMain lists namespaces through the kubeconfig and prints their names.
func clientMain(kubeconfig string) int {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg.Timeout = 10 * time.Second
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	list, err := c.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, n := range list.Items {
		fmt.Println(n.Name)
	}
	return 0
}

func TestObjectsRoundTrip(t *testing.T) {
	c := StartT(t, Options{})
	ctx := context.Background()
	if _, err := CreateNamespace(ctx, c.Client, "rt", map[string]string{"team": "a"}); err != nil {
		t.Fatal(err)
	}
	node, err := CreateNode(ctx, c.Client, "n1", []string{"10.244.1.0/24", "fd00:1::/64"}, "192.168.77.11")
	if err != nil {
		t.Fatal(err)
	}
	if got := node.Status.Addresses[0].Address; got != "192.168.77.11" {
		t.Errorf("node InternalIP = %q", got)
	}
	pod, err := CreatePod(ctx, c.Client, Pod{Namespace: "rt", Name: "web", Node: "n1",
		Labels: map[string]string{"app": "web"}, IPs: []string{"10.244.1.5", "fd00:1::5"},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodRunning || len(pod.Status.PodIPs) != 2 || pod.Spec.NodeName != "n1" {
		t.Errorf("pod after CreatePod: phase %s, podIPs %v, node %q", pod.Status.Phase, pod.Status.PodIPs, pod.Spec.NodeName)
	}
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "rt", Name: "deny"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	if _, err := CreatePolicy(ctx, c.Client, np); err != nil {
		t.Fatal(err)
	}
	if err := SetPodLabels(ctx, c.Client, "rt", "web", map[string]string{"app": "db"}); err != nil {
		t.Fatal(err)
	}
	if err := DeletePod(ctx, c.Client, "rt", "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Pods("rt").Get(ctx, "web", metav1.GetOptions{}); err == nil {
		t.Error("pod still exists after DeletePod with grace 0")
	}
}

func TestAPIServerOutageKeepsData(t *testing.T) {
	c := StartT(t, Options{})
	ctx := context.Background()
	if _, err := CreateNamespace(ctx, c.Client, "outage", nil); err != nil {
		t.Fatal(err)
	}
	netnsPath := newRawNS(t)
	kc, err := c.KubeconfigFor(netnsPath)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.APIServerPID()
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if c.APIServerPID() != 0 {
		t.Fatal("APIServerPID after StopAPIServer is not 0")
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = c.Client.CoreV1().Namespaces().Get(short, "outage", metav1.GetOptions{})
	cancel()
	if err == nil {
		t.Fatal("API call succeeded while the API server was stopped")
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if c.APIServerPID() == pid {
		t.Errorf("API server pid unchanged after restart")
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "outage", metav1.GetOptions{}); err != nil {
		t.Errorf("namespace lost across API server restart: %v", err)
	}
	// The relay dials the API server per connection, so it serves again.
	out, err := clientIn(t, netnsPath, kc)
	if err != nil {
		t.Fatalf("client inside the namespace after the restart: %v", err)
	}
	if !strings.Contains(out, "outage\n") {
		t.Errorf("namespaces listed from inside the netns after the restart = %q", out)
	}
}

// clientIn runs clientMain (this test binary, re-executed) inside the
// namespace at netnsPath and returns its output.
func clientIn(t *testing.T, netnsPath, kubeconfig string) (string, error) {
	t.Helper()
	h, err := ns.GetNS(netnsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+kubeconfig)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := h.Do(func(ns.NetNS) error { return cmd.Start() }); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return stdout.String(), nil
}

// newRawNS makes a namespace with its loopback down, so
// the test also pins that KubeconfigFor brings loopback up.
func newRawNS(t *testing.T) string {
	t.Helper()
	n := testkit.NewTestNS(t, "weirt-kube-")
	testkit.Run(t, "ip", "-n", n.Name, "link", "set", "lo", "down")
	return n.Path()
}

func TestRelayFromInsideNetns(t *testing.T) {
	c := StartT(t, Options{})
	path := newRawNS(t)
	nsh, err := ns.GetNS(path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()

	// Control: the namespace cannot reach the API server's loopback port.
	apiAddr := strings.TrimPrefix(c.Host, "https://")
	err = nsh.Do(func(ns.NetNS) error {
		conn, err := net.DialTimeout("tcp", apiAddr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
	if err == nil {
		t.Fatalf("dial %s from inside the fresh namespace succeeded before the relay", apiAddr)
	}

	kc, err := c.KubeconfigFor(path)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.KubeconfigFor(path); err != nil || again != kc {
		t.Errorf("second KubeconfigFor = %q, %v; want %q", again, err, kc)
	}
	if _, err := CreateNamespace(context.Background(), c.Client, "seen-from-netns", nil); err != nil {
		t.Fatal(err)
	}
	out, err := clientIn(t, path, kc)
	if err != nil {
		t.Fatalf("client-go inside the namespace: %v", err)
	}
	if !strings.Contains(out, "seen-from-netns\n") {
		t.Errorf("namespaces listed from inside the netns = %q, want seen-from-netns among them", out)
	}

	// After StopRelay the namespace is cut off again.
	c.StopRelay(path)
	var exitErr *exec.ExitError
	if _, err := clientIn(t, path, kc); !errors.As(err, &exitErr) {
		t.Errorf("client inside the namespace after StopRelay: err = %v, want a failed exit", err)
	}
}
