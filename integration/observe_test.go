//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/internal/testkit"
)

// TestDeniedPacketsAreLoggedAndCounted runs the agent with denied-packet
// logging on and checks, after one allowed and one denied connection, that
// the agent logged the denied packet with its policy context and that
// /metrics counts the allowing rule and the isolation drop, on both
// backends.
func TestDeniedPacketsAreLoggedAndCounted(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) { deniedLoggedAndCounted(t, backend) })
	}
}

func deniedLoggedAndCounted(t *testing.T, backend string) {
	pods := []*tpod{
		{ns: "default", name: "client", labels: map[string]string{"role": "client"}, ips: []string{"172.17.0.10"}},
		{ns: "default", name: "web", labels: map[string]string{"app": "web"}, ips: []string{"172.17.0.11"}},
	}
	c := newPolicyCluster(t, pods, map[string]map[string]string{"default": {}},
		withBackend(backend),
		withAgentArgs("--log-denied-group", "77", "--log-denied-rate", "100", "--http-addr", "127.0.0.1:9765"))
	c.setPolicies(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: default, name: web-80}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
`)
	c.run([]testkit.Probe{
		{From: "default/client", To: "default/web", Proto: "tcp", Port: 80, Want: true},
		{From: "default/client", To: "default/web", Proto: "tcp", Port: 6379, Want: false},
	})

	logPath := filepath.Join(c.dir, "agent.log")
	want := []string{`msg="denied packet"`, "direction=ingress", "src=172.17.0.10", "dst=172.17.0.11", "proto=tcp", "dport=6379", "default/web-80"}
	var line string
	for deadline := time.Now().Add(5 * time.Second); line == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(logPath)
		for _, l := range strings.Split(string(b), "\n") {
			if containsAll(l, want) {
				line = l
				break
			}
		}
	}
	if line == "" {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("no agent log line with %q:\n%s", want, b)
	}
	t.Logf("agent: %s", line)

	m := c.metrics()
	if v := m[`weir_policy_rule_packets_total{direction="ingress",policy="default/web-80",rule="0"}`]; v < 1 {
		t.Errorf("the rule allowing port 80 counted %v packets, want >= 1", v)
	}
	if v := m[`weir_denied_packets_total{direction="ingress"}`]; v < 1 {
		t.Errorf("ingress isolation counted %v drops, want >= 1", v)
	}
	if v := m[`weir_denied_packets_logged_total`]; v < 1 {
		t.Errorf("%v denied packets logged, want >= 1", v)
	}

	// weirctl rules shows the kernel's counts.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := agentapi.Call(ctx, c.sock, agentapi.Request{Op: agentapi.OpRules})
	if err != nil {
		t.Fatal(err)
	}
	var rules string
	if err := json.Unmarshal(resp.Result, &rules); err != nil {
		t.Fatal(err)
	}
	counted := regexp.MustCompile(`counter denied-ingress \{\n\t\tpackets [1-9]`)
	if !counted.MatchString(rules) {
		t.Errorf("weirctl rules does not show the ingress drops counted:\n%s", rules)
	}

	// --log-denied-rate reaches the kernel.
	switch backend {
	case "nftables":
		if out := runInNode(t, c, "nft", "list", "table", "inet", "weir"); !strings.Contains(out, "limit rate 100/second") {
			t.Errorf("the node's table has no log rule limited to 100/second:\n%s", out)
		}
	case "iptables":
		// The pods are IPv4 only: ip6tables has no selection chain.
		if out := runInNode(t, c, "iptables-save"); !strings.Contains(out, "-m limit --limit 100/sec -j NFLOG") {
			t.Errorf("iptables-save in the node has no NFLOG rule limited to 100/sec:\n%s", out)
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// metrics scrapes the agent's /metrics inside the node namespace (the
// connection is made there; the request is read outside) and returns every
// sample by its series.
func (c *cluster) metrics() map[string]float64 {
	c.t.Helper()
	var conn net.Conn
	err := c.node.Do(func(ns.NetNS) error {
		var err error
		conn, err = net.DialTimeout("tcp", "127.0.0.1:9765", time.Second)
		return err
	})
	if err != nil {
		c.t.Fatalf("connect to the agent's metrics: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprint(conn, "GET /metrics HTTP/1.0\r\nHost: agent\r\n\r\n"); err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			out[l[:i]] = v
		}
	}
	return out
}
