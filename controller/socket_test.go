package controller

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/controller/snapshot"
)

// TestSocketAnswersFromTheAppliedRuleset drives status, rules and explain
// through the real unix socket, against a deny-all-but-app=client policy.
func TestSocketAnswersFromTheAppliedRuleset(t *testing.T) {
	web := pod("ns1", "web", "n1", map[string]string{"app": "web"}, "10.0.0.10")
	client := pod("ns1", "client", "n2", map[string]string{"app": "client"}, "10.0.1.5")
	other := pod("ns1", "other", "n2", map[string]string{"app": "other"}, "10.0.1.6")
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "web-from-client"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}}}},
		}}
	src := &memSource{objs: snapshot.Objects{Pods: snapshot.NewPods(web, client, other), Policies: []*networkingv1.NetworkPolicy{np}}}
	app := &recApplier{}
	a, _ := startAgent(t, src, app)
	waitFor(t, "first sync", func() bool { _, n := app.last(); return n >= 1 })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	go func() { _ = a.ServeSocket(ctx, sock) }()
	call := func(req agentapi.Request) (agentapi.Response, error) {
		var resp agentapi.Response
		var err error
		for i := 0; i < 100; i++ {
			cctx, c := context.WithTimeout(ctx, time.Second)
			resp, err = agentapi.Call(cctx, sock, req)
			c()
			if err == nil || !strings.Contains(err.Error(), "not running") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return resp, err
	}

	resp, err := call(agentapi.Request{Op: agentapi.OpStatus})
	var st Status
	if err != nil || json.Unmarshal(resp.Result, &st) != nil || !st.Synced {
		t.Fatalf("status: %v %s", err, resp.Result)
	}
	resp, err = call(agentapi.Request{Op: agentapi.OpRules})
	var rules string
	if err != nil || json.Unmarshal(resp.Result, &rules) != nil || !strings.Contains(rules, "ns1/web-from-client ingress rule 0") {
		t.Errorf("rules lack the policy's rule: %v\n%s", err, rules)
	}
	rule0 := 0
	byRule := &agentapi.ExplainOwner{Kind: "policy-rule", Namespace: "ns1", Policy: "web-from-client", Direction: "ingress",
		Rule: &rule0, Text: "ns1/web-from-client ingress rule 0"}
	isolated := &agentapi.ExplainOwner{Kind: "isolation", Direction: "ingress", Text: "ingress isolated: no policy allows"}
	cases := []struct {
		src, dst string
		allowed  bool
		last     agentapi.ExplainStep // the step that decided
	}{
		{"ns1/client", "ns1/web", true, agentapi.ExplainStep{Owner: byRule, Verdict: "accept"}},
		{"ns1/other", "ns1/web", false, agentapi.ExplainStep{Owner: isolated, Verdict: "drop"}},
		{"10.9.9.9", "10.0.0.10", false, agentapi.ExplainStep{Owner: isolated, Verdict: "drop"}},
		{"ns1/web", "ns1/other", true, agentapi.ExplainStep{Chain: "forward-ingress", Rule: -1, Verdict: "accept", Text: "forward-ingress: policy accept"}},
	}
	for _, tc := range cases {
		resp, err := call(agentapi.Request{Op: agentapi.OpExplain, Src: tc.src, Dst: tc.dst, Protocol: "TCP", Port: 80})
		var e agentapi.Explanation
		if err != nil || json.Unmarshal(resp.Result, &e) != nil || len(e.Steps) == 0 {
			t.Fatalf("explain %s -> %s: %v %s", tc.src, tc.dst, err, resp.Result)
		}
		last := e.Steps[len(e.Steps)-1]
		if tc.last.Owner != nil { // the rule's position and text are the compiler's
			last.Chain, last.Rule, last.Text = "", 0, ""
		}
		if e.Allowed != tc.allowed || !reflect.DeepEqual(last, tc.last) {
			t.Errorf("explain %s -> %s = %s, want allowed=%v decided by %+v (owner %+v)", tc.src, tc.dst, resp.Result, tc.allowed, tc.last, tc.last.Owner)
		}
	}
	if _, err := call(agentapi.Request{Op: agentapi.OpExplain, Src: "ns1/ghost", Dst: "ns1/web", Port: 80}); err == nil {
		t.Error("explain of an unknown pod succeeded")
	}
	if _, err := call(agentapi.Request{Op: agentapi.OpExplain, Src: "ns1/client", Dst: "ns1/web", Protocol: "ICMP", Port: 80}); err == nil {
		t.Error("explain with an unknown protocol succeeded")
	}
}

// serveSocket serves a's socket at sock until the test ends, once it
// exists. It does not connect: a probe would hold one of the agent's
// connection slots for a while.
func serveSocket(t *testing.T, a *Agent, sock string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.ServeSocket(ctx, sock) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the socket", func() bool {
		fi, err := os.Lstat(sock)
		return err == nil && fi.Mode().Type() == fs.ModeSocket
	})
}

// dial connects to sock, waiting out the moment between the socket's
// creation and its listen(2).
func dial(t *testing.T, sock string) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	waitFor(t, "a connection", func() bool {
		c, err = net.Dial("unix", sock)
		return !errors.Is(err, syscall.ECONNREFUSED)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAnswer reads the agent's answer line on c and then expects the
// agent to hang up.
func readAnswer(t *testing.T, c net.Conn) agentapi.Response {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadBytes('\n')
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	var resp agentapi.Response
	if err := json.Unmarshal(line, &resp); err != nil {
		t.Fatalf("answer %q: %v", line, err)
	}
	// A reset: the agent hung up on request bytes it had no use for.
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after the answer: %v, want the agent to hang up", err)
	}
	return resp
}

func TestSocketAnswersAnOversizedRequestWithAnErrorAndHangsUp(t *testing.T) {
	a, _ := startAgent(t, &memSource{}, &recApplier{})
	sock := filepath.Join(t.TempDir(), "agent.sock")
	serveSocket(t, a, sock)

	// The longest request taken: MaxRequestSize bytes, newline included.
	status := `{"op":"status"}`
	longest := status + strings.Repeat(" ", agentapi.MaxRequestSize-len(status)-1) + "\n"
	c := dial(t, sock)
	if _, err := c.Write([]byte(longest)); err != nil {
		t.Fatal(err)
	}
	if resp := readAnswer(t, c); resp.Error != "" || len(resp.Result) == 0 {
		t.Errorf("request of exactly %d bytes: %+v, want the status", agentapi.MaxRequestSize, resp)
	}

	// One byte more, and no newline in sight: 64 KiB of it.
	c2 := dial(t, sock)
	go func() { _, _ = c2.Write([]byte(strings.Repeat("x", 64<<10))) }()
	if resp := readAnswer(t, c2); !strings.Contains(resp.Error, "longer than") {
		t.Errorf("oversized request answered %+v, want an error", resp)
	}
}

func TestSocketDropsAClientThatSendsNoRequest(t *testing.T) {
	a, _ := startAgent(t, &memSource{}, &recApplier{})
	a.sockReadTimeout = 100 * time.Millisecond
	sock := filepath.Join(t.TempDir(), "agent.sock")
	serveSocket(t, a, sock)
	for _, sent := range []string{"", `{"op":"sta`} {
		c := dial(t, sock)
		if _, err := c.Write([]byte(sent)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("client that sent %q and then nothing: read %d bytes, %v; want the agent to hang up", sent, n, err)
		}
	}
}

func TestSocketClosesConnectionsBeyondTheLimit(t *testing.T) {
	a, _ := startAgent(t, &memSource{}, &recApplier{})
	a.sockMaxConns = 2
	sock := filepath.Join(t.TempDir(), "agent.sock")
	serveSocket(t, a, sock)
	var held []net.Conn
	for range 2 { // silent clients hold both slots
		held = append(held, dial(t, sock))
	}
	extra := dial(t, sock)
	if resp := readAnswer(t, extra); !strings.Contains(resp.Error, "busy") {
		t.Errorf("connection beyond the limit answered %+v, want busy", resp)
	}
	if n := a.Status().RefusedConns; n != 1 {
		t.Errorf("status counts %d refused connections, want 1", n)
	}
	// A slot given back serves the next client.
	held[0].Close()
	waitFor(t, "a served status request", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := agentapi.Call(ctx, sock, agentapi.Request{Op: agentapi.OpStatus})
		return err == nil
	})
}

func TestSocketLivesInADirectoryOnlyTheAgentMayEnter(t *testing.T) {
	cases := []struct {
		name string
		// prepare makes the socket's directory d, or leaves it missing.
		prepare func(t *testing.T, d string)
	}{
		{"missing directory is created private", func(*testing.T, string) {}},
		{"directory a hostPath made 0755 is tightened", func(t *testing.T, d string) { mkdir(t, d, 0o755) }},
		{"0755 directory with a stale socket is tightened", func(t *testing.T, d string) {
			mkdir(t, d, 0o755)
			if err := os.WriteFile(filepath.Join(d, "agent.sock"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := startAgent(t, &memSource{}, &recApplier{})
			d := filepath.Join(t.TempDir(), "run")
			tc.prepare(t, d)
			serveSocket(t, a, filepath.Join(d, "agent.sock"))
			fi, err := os.Lstat(d)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
				t.Errorf("socket directory is %v, want a directory 0700", fi.Mode())
			}
		})
	}
}

func TestSocketRefusesADirectoryOthersControl(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(t *testing.T, d string)
		wantMsg string
	}{
		{"symlink to a private directory", func(t *testing.T, d string) {
			if err := os.Symlink(t.TempDir(), d); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
		{"directory owned by another user", func(t *testing.T, d string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a directory away")
			}
			mkdir(t, d, 0o700)
			if err := os.Chown(d, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 65534"},
		{"shared directory others may enter", func(t *testing.T, d string) {
			mkdir(t, d, 0o755)
			if err := os.WriteFile(filepath.Join(d, "someone-else"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "directory of its own"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := startAgent(t, &memSource{}, &recApplier{})
			d := filepath.Join(t.TempDir(), "run")
			tc.prepare(t, d)
			before, err := os.Lstat(d)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			err = a.ServeSocket(ctx, filepath.Join(d, "agent.sock"))
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("ServeSocket = %v, want an error saying %q", err, tc.wantMsg)
			}
			if _, err := os.Lstat(filepath.Join(d, "agent.sock")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("socket created in the refused directory (%v)", err)
			}
			if after, err := os.Lstat(d); err != nil || after.Mode() != before.Mode() {
				t.Errorf("refused directory changed from %v to %v (%v)", before.Mode(), after.Mode(), err)
			}
		})
	}
}

// mkdir makes directory d with exactly mode.
func mkdir(t *testing.T, d string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(d, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}
