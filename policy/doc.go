// Package policy is weir's NetworkPolicy compiler.
//
// It is pure (no clock, no I/O, sorted output): Compile turns a Snapshot of
// the cluster, as seen from one node, into the ruleset.Ruleset of weir's
// table; a Compiler does the same for a sequence of snapshots, recomputing
// only what changed since the previous one (same output as Compile,
// always). names.go describes the chain and set layout it produces.
//
// Layer: it imports package ruleset (its output) and the Kubernetes API
// types, never a kernel backend (nft, iptables) nor the API server.
package policy
