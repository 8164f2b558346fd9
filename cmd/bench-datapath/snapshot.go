package main

import (
	"github.com/weir-cni/weir/internal/datapath"
	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/policy"
)

// The simulated cluster is synth.Cluster seen from synth.NodeName, which
// owns synth.NodeCIDR; other nodes own 10.N.0.0/16. The two real pods sit
// in the node's range; so do the first ten generated pods of every
// namespace, one per app label (they have no veth: they make the node's
// table as large as a busy node's, with every policy selecting some local
// pod and therefore compiled).
const (
	nodeName = synth.NodeName
	serverIP = datapath.ServerIP
	clientIP = datapath.ClientIP
	// serverNS and clientNS are production namespaces of the generated
	// cluster (even index), so the generated policies apply to the real pods.
	serverNS = datapath.ServerNS
	clientNS = datapath.ClientNS

	testPort   = 5201 // the server's container port named "bench": allowed only by policy
	deniedPort = datapath.DeniedPort
)

// snapshot builds a cluster of pods pods (the server and the client among
// them) in pods/100 namespaces plus "monitoring", and policies policies
// (synth.Cluster: ten shapes per namespace, the tier-* ones allowing the
// named port "bench" too).
//
// The server (ns0, app0, db) is selected for ingress by app0-*,
// monitoring-* and tier-*; the client (ns2, app2, frontend) for egress by
// app2-* and tier-*. Only tier-* allows client -> server on testPort, and
// it sorts last, so a new connection walks the other policies first.
// With clusterPolicies, the server and the client are each held by one
// in a hundred of them, which a new connection walks before. With learned,
// learnedPolicy comes last of those and allows the client's egress instead
// of app2-* and tier-* (see learned.go).
func snapshot(pods, policies, clusterPolicies, learned int) policy.Snapshot {
	s := synth.Cluster(synth.Options{Pods: max(pods-2, 0), Policies: policies, Namespaces: max(pods/100, 3), Local: 10, TierPort: "bench",
		ClusterPolicies: clusterPolicies})
	s.Pods = append(realPods(), s.Pods...)
	return withLearned(s, learned)
}

// realPods are the two pods wired by the plugin; the server's port named
// "bench" is testPort.
func realPods() []policy.Pod {
	return datapath.Pods(policy.ContainerPort{Name: "bench", Protocol: "TCP", Port: testPort},
		policy.ContainerPort{Name: "http", Protocol: "TCP", Port: 8080})
}
