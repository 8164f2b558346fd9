// Package harness builds throwaway network namespaces and runs CNI plugins,
// probes and checks inside them. It touches the kernel (namespaces, links,
// sockets) and needs root; it never changes the caller's own namespace.
// The integration tests, the benchmark and the demo share it.
//
// WithoutNFTables runs a command as on a kernel without nf_tables (a
// seccomp filter denies it nfnetlink sockets); a binary using it must call
// ExecIfAskedWithoutNFTables first thing in main or TestMain.
package harness
