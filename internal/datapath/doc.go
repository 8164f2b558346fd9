// Package datapath measures what a node's packet filtering costs the data
// path between two pods: a testbed is a node namespace with a server and a
// client pod wired by the weir plugin; a configuration is a backend
// switched on in a testbed's node (no table, weir's table, the one-rule
// conntrack floor, or whatever the caller brings); Rounds measures
// single-stream TCP throughput, request/response latency and
// new-connection rate between the pods, with client and server threads
// pinned to two CPUs, in interleaved rounds, and Report prints medians and
// ratios. cmd/bench-datapath and cmd/bench-api-to-kernel (its peer) use
// it. It needs root and touches only the namespaces it creates.
package datapath
