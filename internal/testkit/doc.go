// Package testkit is the kernel side of weir's tests, benchmarks and demo:
// it builds throwaway network namespaces, runs commands, nft, CNI plugins
// and weir-agent inside them, and probes TCP and UDP between them. It
// touches the kernel (namespaces, links, sockets) and needs root; it never
// changes the caller's own namespace. The objects side (Kubernetes objects,
// scenario files, generated clusters) is internal/fixtures and
// internal/synth. Only tests, bench/ and cmd/weir-demo import it; weir,
// weir-agent and weirctl never do.
//
// The helpers taking a testing.TB fail the test on error and undo their
// work when it ends; the others return errors, for binaries.
//
// WithoutNFTables runs a command as on a kernel without nf_tables (a
// seccomp filter denies it nfnetlink sockets); a binary using it must call
// ExecIfAskedWithoutNFTables first thing in main or TestMain.
package testkit
