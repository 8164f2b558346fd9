package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/controller"
	"github.com/weir-cni/weir/controller/source"
	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
)

const auditManifests = `
apiVersion: v1
kind: Node
metadata: {name: node-a}
spec: {podCIDRs: ["10.244.1.0/24"]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: tools}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node-a, containers: [{name: c, image: x}]}
status: {podIPs: [{ip: 10.244.1.5}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {nodeName: node-a, containers: [{name: c, image: x}]}
status: {podIPs: [{ip: 10.244.1.6}]}
---
apiVersion: v1
kind: Pod
metadata: {name: debug, namespace: tools}
spec: {nodeName: node-a, containers: [{name: c, image: x}]}
status: {podIPs: [{ip: 10.244.1.7}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-locked, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
`

// fakeApplier programs nothing and reports problems from every Apply.
type fakeApplier struct{ problems []dataplane.Problem }

func (f fakeApplier) Apply(context.Context, ruleset.Ruleset) ([]dataplane.Problem, error) {
	return f.problems, nil
}

func (fakeApplier) Counters(context.Context) (map[string]ruleset.CounterValue, error) {
	return nil, errors.New("no kernel counters")
}

func (fakeApplier) Close() error { return nil }

// serveAgent runs a weir-agent on the manifests, with a backend that
// programs nothing and reports problems, and returns its socket once it
// has synced.
func serveAgent(t *testing.T, manifests string, problems ...dataplane.Problem) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(manifests), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &controller.Agent{Node: "node-a", Source: &source.DirSource{Dir: dir}, Applier: fakeApplier{problems},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	sockDir := filepath.Join(t.TempDir(), "run")
	sock := filepath.Join(sockDir, "agent.sock")
	done := make(chan struct{}, 2)
	go func() { _ = a.Run(ctx); done <- struct{}{} }()
	go func() { _ = a.ServeSocket(ctx, sock); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	for deadline := time.Now().Add(5 * time.Second); !a.Status().Synced; {
		if time.Now().After(deadline) {
			t.Fatal("agent did not sync")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, err := agentapi.Call(ctx, sock, agentapi.Request{Op: agentapi.OpStatus}); err == nil {
			return sock
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAuditAgainstAnAgent(t *testing.T) {
	sock := serveAgent(t, auditManifests)
	var out, errb bytes.Buffer
	if rc := run([]string{"--socket", sock, "audit"}, &out, &errb); rc != 3 {
		t.Fatalf("rc = %d, want 3 (findings); stderr %s", rc, errb.String())
	}
	text := out.String()
	textdiff.Mentions(t, "table", text,
		"Namespaces without a NetworkPolicy (1):\n  tools\n",
		"Pods not isolated (2)",
		"shop       web    node-a  egress\n",
		"tools      debug  node-a  ingress,egress\n")
	if strings.Contains(text, " db ") {
		t.Errorf("db is isolated both ways but listed:\n%s", text)
	}

	out.Reset()
	if rc := run([]string{"--socket", sock, "audit", "-o", "json"}, &out, &errb); rc != 3 {
		t.Fatalf("json: rc = %d", rc)
	}
	var got agentapi.Audit
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("json output: %v\n%s", err, out.String())
	}
	want := agentapi.Audit{Node: "node-a", Namespaces: []string{"tools"}, Pods: []agentapi.AuditPod{
		{Namespace: "shop", Name: "web", Node: "node-a", Egress: true},
		{Namespace: "tools", Name: "debug", Node: "node-a", Ingress: true, Egress: true},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("json: got %+v, want %+v", got, want)
	}
}

func TestAuditWithNothingOpenExitsZero(t *testing.T) {
	sock := serveAgent(t, `
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec: {nodeName: node-a, containers: [{name: c, image: x}]}
status: {podIPs: [{ip: 10.244.1.5}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
`)
	var out, errb bytes.Buffer
	if rc := run([]string{"--socket", sock, "audit"}, &out, &errb); rc != 0 {
		t.Fatalf("rc = %d, want 0; stderr %s\n%s", rc, errb.String(), out.String())
	}
	textdiff.Mentions(t, "output", out.String(), "Every namespace has a NetworkPolicy.", "Every pod is isolated for ingress and egress.")
}

func TestAuditUsage(t *testing.T) {
	for _, args := range [][]string{{"audit", "-o", "yaml"}, {"audit", "extra"}} {
		if _, _, err := request(args); err == nil {
			t.Errorf("request(%q) accepted", args)
		}
	}
	if req, out, err := request([]string{"audit"}); err != nil || req.Op != agentapi.OpAudit || out != "table" {
		t.Errorf("audit: %+v %q %v", req, out, err)
	}
}

// TestStatusShowsDataplaneProblems pins that what the backend could not
// express reaches the operator: `weirctl status` prints each problem with
// its policy, direction and rule.
func TestStatusShowsDataplaneProblems(t *testing.T) {
	want := []dataplane.Problem{
		{Policy: "shop/web-in", Direction: "ingress", Rule: 1, Message: `rule "accept": a log rule with lookups or a verdict is not translated`},
		{Message: "base chain route: type route hook output has no iptables equivalent (skipped)"},
	}
	sock := serveAgent(t, auditManifests, want...)
	var out, errb bytes.Buffer
	if rc := run([]string{"--socket", sock, "status"}, &out, &errb); rc != 0 {
		t.Fatalf("rc = %d; stderr %s", rc, errb.String())
	}
	var st struct{ DataplaneProblems []dataplane.Problem }
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("status output: %v\n%s", err, out.String())
	}
	if !reflect.DeepEqual(st.DataplaneProblems, want) {
		t.Errorf("status shows dataplane problems %+v, want %+v", st.DataplaneProblems, want)
	}
}
