//go:build integration

package dnsproxy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/internal/testkit"
)

// privilegesEnv makes the test binary run CheckReplyPrivileges and exit.
const privilegesEnv = "WEIR_DNSPROXY_CHECK_PRIVILEGES"

// TestCheckReplyPrivileges runs the check in a node namespace as an
// unprivileged user holding only the capabilities the agent's container
// had before it added NET_BIND_SERVICE (NET_ADMIN and NET_RAW): it must
// refuse, naming what is missing; with NET_BIND_SERVICE added it passes.
// The cluster run found the gap: every answer was dropped as
// reply_failed after the resolver had given it.
func TestCheckReplyPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	node := testkit.NewTestNS(t, "dnsp")
	bin := copyForNobody(t)
	for _, c := range []struct {
		name string
		caps []uintptr
		ok   bool
	}{
		{"NET_ADMIN and NET_RAW", []uintptr{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW}, false},
		{"NET_ADMIN, NET_RAW and NET_BIND_SERVICE", []uintptr{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW, unix.CAP_NET_BIND_SERVICE}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := exec.Command(bin, "-test.run=^$")
			cmd.Env = append(os.Environ(), privilegesEnv+"=1")
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, AmbientCaps: c.caps}
			err := testkit.RunIn(node, cmd)
			if c.ok && err != nil {
				t.Fatalf("check refused: %v: %s", err, &out)
			}
			if !c.ok && (err == nil || !strings.Contains(out.String(), "CAP_NET_BIND_SERVICE")) {
				t.Fatalf("check passed, or did not say what is missing: %v: %s", err, &out)
			}
		})
	}
}

// copyForNobody copies the test binary where an unprivileged user may run
// it (go test's build directory is root's alone).
func copyForNobody(t *testing.T) string {
	dir, err := os.MkdirTemp("", "weir-dnsproxy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	data, err := os.ReadFile(os.Args[0])
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	bin := filepath.Join(dir, "dnsproxy.test")
	if err == nil {
		err = os.WriteFile(bin, data, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
