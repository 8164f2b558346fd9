// Package cluster brings up a real multi-node Kubernetes cluster on one
// machine without containers, the way kind does with Docker: a control
// plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) in
// one network namespace, and worker nodes each in a network namespace and a
// mount namespace of their own running containerd + runc, a kubelet and
// kube-proxy (nftables mode). An underlay bridge inside the control plane's
// namespace joins them. Nothing is added to, or flushed from, the machine's
// own network namespace; HostState snapshots it so callers can prove that.
//
// It touches the kernel (namespaces, links, mounts, cgroups) and starts
// processes; it needs root. The state of a running cluster is kept in a
// JSON file in its directory, so another process can tear it down (Down).
package cluster
