package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// With no kubelet, scheduler or controller-manager, the helpers below write
// what those would: a node's pod CIDRs and InternalIP, a pod's node, IPs and
// phase (through the status subresource). Each test should use its own
// namespaces: with no namespace controller, deleted namespaces never finish
// terminating.

// CreateNode registers a node with spec.podCIDRs and, through UpdateStatus,
// an InternalIP address and a Ready condition.
func CreateNode(ctx context.Context, c kubernetes.Interface, name string, podCIDRs []string, internalIP string) (*corev1.Node, error) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}}}
	n.Spec.PodCIDRs = podCIDRs
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR = podCIDRs[0]
	}
	n, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create node %s: %w", name, err)
	}
	n.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: internalIP},
		{Type: corev1.NodeHostName, Address: name},
	}
	n.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "WeirTest",
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
	}}
	n, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update node %s status: %w", name, err)
	}
	return n, nil
}

// CreateNamespace creates a namespace with labels (the API server adds
// kubernetes.io/metadata.name).
func CreateNamespace(ctx context.Context, c kubernetes.Interface, name string, labels map[string]string) (*corev1.Namespace, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	ns, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	return ns, nil
}

// Pod describes a pod to register as if scheduled and running.
type Pod struct {
	Namespace, Name string
	Node            string
	Labels          map[string]string
	// IPs become status.podIPs (and podIP, the first); none leaves the pod
	// Pending with no address, as between scheduling and CNI ADD.
	IPs         []string
	Ports       []corev1.ContainerPort
	HostNetwork bool
	// HostIP is status.hostIP (optional).
	HostIP string
}

// CreatePod creates the pod on its node (spec.nodeName set, no scheduler),
// then, if it has IPs, writes status.podIPs and phase Running through the
// status subresource as the kubelet would. It returns the stored pod.
func CreatePod(ctx context.Context, c kubernetes.Interface, p Pod) (*corev1.Pod, error) {
	zero := int64(0)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels},
		Spec: corev1.PodSpec{
			NodeName:                      p.Node,
			HostNetwork:                   p.HostNetwork,
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{
				Name: "main", Image: "weir.test/pause:never-pulled",
				ImagePullPolicy: corev1.PullNever, Ports: p.Ports,
			}},
		},
	}
	pod, err := c.CoreV1().Pods(p.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	if len(p.IPs) == 0 {
		return pod, nil
	}
	return SetPodIPs(ctx, c, pod, p.HostIP, p.IPs...)
}

// SetPodIPs writes status.podIPs/podIP, hostIP and phase Running.
func SetPodIPs(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod, hostIP string, ips ...string) (*corev1.Pod, error) {
	pod = pod.DeepCopy()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP, pod.Status.PodIPs = "", nil
	for _, ip := range ips {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		pod.Status.PodIP = ips[0]
	}
	if hostIP != "" {
		pod.Status.HostIP, pod.Status.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}}
	}
	out, err := c.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update pod %s/%s status: %w", pod.Namespace, pod.Name, err)
	}
	return out, nil
}

// SetPodLabels replaces the pod's labels (retrying on conflict).
func SetPodLabels(ctx context.Context, c kubernetes.Interface, namespace, name string, labels map[string]string) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := c.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Labels = labels
		_, err = c.CoreV1().Pods(namespace).Update(ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("set labels of pod %s/%s: %w", namespace, name, err)
	}
	return nil
}

// SetNamespaceLabels replaces the namespace's labels (the API server keeps
// kubernetes.io/metadata.name).
func SetNamespaceLabels(ctx context.Context, c kubernetes.Interface, name string, labels map[string]string) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ns, err := c.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ns.Labels = labels
		_, err = c.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("set labels of namespace %s: %w", name, err)
	}
	return nil
}

// DeletePod deletes the pod with grace period 0: with no kubelet to confirm,
// anything else would leave it terminating.
func DeletePod(ctx context.Context, c kubernetes.Interface, namespace, name string) error {
	zero := int64(0)
	err := c.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil {
		return fmt.Errorf("delete pod %s/%s: %w", namespace, name, err)
	}
	return nil
}

// CreatePolicy creates a NetworkPolicy in its namespace.
func CreatePolicy(ctx context.Context, c kubernetes.Interface, np *networkingv1.NetworkPolicy) (*networkingv1.NetworkPolicy, error) {
	out, err := c.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create networkpolicy %s/%s: %w", np.Namespace, np.Name, err)
	}
	return out, nil
}

// UpdatePolicy replaces a NetworkPolicy's spec (retrying on conflict).
func UpdatePolicy(ctx context.Context, c kubernetes.Interface, namespace, name string, spec networkingv1.NetworkPolicySpec) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		np, err := c.NetworkingV1().NetworkPolicies(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		np.Spec = spec
		_, err = c.NetworkingV1().NetworkPolicies(namespace).Update(ctx, np, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("update networkpolicy %s/%s: %w", namespace, name, err)
	}
	return nil
}

// DeletePolicy deletes a NetworkPolicy.
func DeletePolicy(ctx context.Context, c kubernetes.Interface, namespace, name string) error {
	if err := c.NetworkingV1().NetworkPolicies(namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete networkpolicy %s/%s: %w", namespace, name, err)
	}
	return nil
}
