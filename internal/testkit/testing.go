package testkit

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
)

// NewTestNS is NewNS for a test: it fails the test on error and deletes
// the namespace when the test ends.
func NewTestNS(t testing.TB, prefix string) *NS {
	t.Helper()
	n, err := NewNS(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Delete(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return n
}

// Run runs a command (args[0] with the rest as its arguments) and fails
// the test, with its output, if it fails.
func Run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// ServeEcho runs an Echo server on each port in netns until the test ends.
func ServeEcho(t testing.TB, netns ns.NetNS, ports ...int) {
	t.Helper()
	for _, port := range ports {
		e, err := StartEcho(netns, port)
		if err != nil {
			t.Fatalf("echo on port %d: %v", port, err)
		}
		t.Cleanup(func() { _ = e.Close() })
	}
}
