package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// noNFTablesEnv asks ExecIfAskedWithoutNFTables to run its arguments as a
// command that cannot reach nf_tables.
const noNFTablesEnv = "WEIR_HARNESS_EXEC_WITHOUT_NFTABLES"

// WithoutNFTables rewrites cmd (not started yet) to run through the current
// executable, which must call ExecIfAskedWithoutNFTables first thing in main
// or TestMain. There it installs a seccomp filter failing every
// socket(AF_NETLINK, *, NETLINK_NETFILTER) with EPROTONOSUPPORT, as a kernel
// built without nfnetlink answers, and then execs the real command. The
// command, and every process it starts, sees a kernel without nf_tables;
// everything else (rtnetlink, iptables-legacy's setsockopt interface)
// works as usual.
func WithoutNFTables(cmd *exec.Cmd) error {
	if _, err := auditArch(); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(slices.Clone(env), noNFTablesEnv+"=1")
	cmd.Args = append([]string{self, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = self
	return nil
}

// ExecIfAskedWithoutNFTables returns nil at once unless this process was
// started by a command WithoutNFTables rewrote. Then it denies nf_tables
// and execs the real command: it returns only on failure.
func ExecIfAskedWithoutNFTables() error {
	if os.Getenv(noNFTablesEnv) == "" {
		return nil
	}
	if len(os.Args) < 2 {
		return fmt.Errorf("%s set without a command to run", noNFTablesEnv)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, noNFTablesEnv+"=") {
			env = append(env, kv)
		}
	}
	runtime.LockOSThread()
	if err := denyNFTables(); err != nil {
		return err
	}
	if err := syscall.Exec(os.Args[1], os.Args[1:], env); err != nil {
		return fmt.Errorf("exec %s: %w", os.Args[1], err)
	}
	return nil
}

// auditArch is the seccomp architecture of this build.
func auditArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, nil
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, nil
	}
	return 0, fmt.Errorf("denying nf_tables: no seccomp filter for %s", runtime.GOARCH)
}

// denyNFTables installs the seccomp filter on every thread of the process.
func denyNFTables() error {
	arch, err := auditArch()
	if err != nil {
		return err
	}
	// Offsets into struct seccomp_data: nr, arch, then args[0..5] as u64
	// from 16 (low halves first on these little-endian architectures).
	const offNr, offArch, offArg0, offArg2 = 0, 4, 16, 32
	ld := func(off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
	}
	// jne skips to the final ALLOW (the last instruction) unless A == k.
	jne := func(k uint32, pc, n int) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jf: uint8(n - pc - 2)}
	}
	const n = 10
	prog := []unix.SockFilter{
		ld(offArch), jne(arch, 1, n),
		ld(offNr), jne(unix.SYS_SOCKET, 3, n),
		ld(offArg0), jne(unix.AF_NETLINK, 5, n),
		ld(offArg2), jne(unix.NETLINK_NETFILTER, 7, n),
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPROTONOSUPPORT)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	if len(prog) != n {
		return fmt.Errorf("seccomp program has %d instructions, jumps assume %d", len(prog), n)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	tid, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("install seccomp filter: %w", errno)
	}
	if tid != 0 {
		return fmt.Errorf("install seccomp filter: thread %d could not take it", tid)
	}
	runtime.KeepAlive(prog)
	return nil
}
