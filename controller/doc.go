// Package controller is weir-agent's control loop. One worker reads a
// snapshot.Source (the sources live in package source), keeps a
// snapshot.View of the cluster up to date, overlays the pods the CNI
// plugin announced over the socket, compiles the node's ruleset with a
// policy.Compiler and applies it through an Applier (nft or iptables, see
// NewApplier). Around that loop: the reconcilers that keep node routes and
// the CNI config in line with the cluster, the socket the plugin and
// weirctl talk to, and metrics.
//
// It touches the kernel (the ruleset through its appliers, node routes, the
// NFLOG group of denied packets) and the node's files (CNI config, socket);
// it talks to the API server to authorize metrics scrapes and, from the
// one agent a Lease elects (see Lease), to write the Accepted condition of
// ClusterNetworkPolicies (see ClusterPolicyStatus).
package controller
