// Package kube starts a real etcd and kube-apiserver on loopback for tests
// and benchmarks, and registers cluster objects in it the way the missing
// kubelet, scheduler and controller-manager would. It talks to the API
// server and starts processes; the relay (relay.go) also enters network
// namespaces to listen inside them, never changing the caller's own.
//
// The binaries are built from Go modules by hack/build-k8s.sh and cached by
// version under ${WEIR_CACHE:-$HOME/.cache/weir}/bin; Start fails with a
// message naming that script when they are missing.
package kube
