package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echoServer answers /echo?msg= as agnhost netexec does and counts the
// connections it accepted.
func echoServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.FormValue("msg"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func heldScript(t *testing.T, srv *httptest.Server) (*exec.Cmd, string) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is needed: the agnhost image runs this script with bash")
	}
	stop := filepath.Join(t.TempDir(), "stop")
	return exec.Command("bash", "-c", heldConnection(srv.Listener.Addr().String(), stop)), stop
}

// TestHeldConnectionKeepsOneConnection runs the rollout check's script
// against a loopback server: its requests are all answered on one
// connection until it is told to stop.
func TestHeldConnectionKeepsOneConnection(t *testing.T) {
	srv, conns := echoServer(t)
	cmd, stop := heldScript(t, srv)
	time.AfterFunc(1600*time.Millisecond, func() { os.WriteFile(stop, nil, 0o600) })
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "KEPT: ") {
		t.Fatalf("script: %q %v", out, err)
	}
	var n int
	if _, err := fmt.Sscanf(string(out), "KEPT: %d", &n); err != nil || n < 2 {
		t.Errorf("want several requests answered, got %q", out)
	}
	if c := conns.Load(); c != 1 {
		t.Errorf("the script opened %d connections, want 1", c)
	}
}

// TestHeldConnectionReportsABreak cuts the connection under the script:
// it must say BROKEN, not reconnect.
func TestHeldConnectionReportsABreak(t *testing.T) {
	srv, _ := echoServer(t)
	cmd, stop := heldScript(t, srv)
	time.AfterFunc(1200*time.Millisecond, srv.CloseClientConnections)
	time.AfterFunc(10*time.Second, func() { os.WriteFile(stop, nil, 0o600) })
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "BROKEN: ") {
		t.Fatalf("script: %q %v, want BROKEN", out, err)
	}
}
