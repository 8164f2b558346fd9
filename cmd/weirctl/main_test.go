package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/weir-cni/weir/agentapi"
)

func TestRequestParsing(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want agentapi.Request
		bad  bool
	}{
		{"status", []string{"status"}, agentapi.Request{Op: agentapi.OpStatus}, false},
		{"explain defaults to tcp", []string{"explain", "ns/a", "10.0.0.1", "80"},
			agentapi.Request{Op: agentapi.OpExplain, Src: "ns/a", Dst: "10.0.0.1", Protocol: "TCP", Port: 80}, false},
		{"explain with protocol", []string{"explain", "a/b", "c/d", "udp/53"},
			agentapi.Request{Op: agentapi.OpExplain, Src: "a/b", Dst: "c/d", Protocol: "UDP", Port: 53}, false},
		{"port out of range", []string{"explain", "a/b", "c/d", "70000"}, agentapi.Request{}, true},
		{"missing args", []string{"explain", "a/b"}, agentapi.Request{}, true},
		{"unknown command", []string{"frobnicate"}, agentapi.Request{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := request(tc.args)
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v, bad = %v", err, tc.bad)
			}
			if !tc.bad && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNoAgentIsAClearError(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := run([]string{"--socket", t.TempDir() + "/none.sock", "status"}, &out, &errb); rc != 1 {
		t.Errorf("rc = %d", rc)
	}
	if !bytes.Contains(errb.Bytes(), []byte("not running")) {
		t.Errorf("stderr = %q", errb.String())
	}
}

// TestExplainPrintsEachStep pins what explain prints of the agent's
// answer: the verdict, then each step's text; DENIED exits 3.
func TestExplainPrintsEachStep(t *testing.T) {
	e := agentapi.Explanation{Src: "10.0.0.2", Dst: "10.0.0.1", Steps: []agentapi.ExplainStep{
		{Chain: "forward-egress", Rule: -1, Verdict: "accept", Text: "forward-egress: policy accept"},
		{Chain: "sel-in-X-ns", Rule: 1, Verdict: "drop", Text: `sel-in-X-ns: counter name "denied-ingress" drop comment "ingress isolated: no policy allows"`,
			Owner: &agentapi.ExplainOwner{Kind: "isolation", Direction: "ingress", Text: "ingress isolated: no policy allows"}},
	}}
	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if rc := print(&out, agentapi.OpExplain, raw); rc != 3 {
		t.Errorf("rc = %d, want 3 (DENIED)", rc)
	}
	want := "10.0.0.2 -> 10.0.0.1: DENIED\n  forward-egress: policy accept\n" +
		`  sel-in-X-ns: counter name "denied-ingress" drop comment "ingress isolated: no policy allows"` + "\n"
	if out.String() != want {
		t.Errorf("printed\n%s\nwant\n%s", out.String(), want)
	}
}

// TestExplainPrintsLearned pins how explain prints the DNS answers that
// let the source reach the destination: the rule and its set, the name
// asked and the end of its CNAME chain, when learned and when it expires.
func TestExplainPrintsLearned(t *testing.T) {
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	e := agentapi.Explanation{Allowed: true, Src: "10.244.1.5", Dst: "192.0.2.1", Steps: []agentapi.ExplainStep{
		{Chain: "cnp-adm-eg-X-web-out", Verdict: "accept", Text: `cnp-adm-eg-X-web-out: tcp dport 443 ip saddr . ip daddr @dns4-ABC accept`}},
		Learned: []agentapi.ExplainLearned{
			{Set: "dns4-ABC", Owner: &agentapi.ExplainOwner{Kind: "policy-rule", Text: "Admin cnp/web-out egress rule 0 'api': Accept"},
				Name: "api.example.com", Answer: "edge.example.net", Learned: at, Expires: at.Add(30 * time.Second)},
			{Set: "dns4-DEF", Name: "www.example.org", Answer: "www.example.org", Learned: at, Expires: at.Add(time.Hour)},
		}}
	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if rc := print(&out, agentapi.OpExplain, raw); rc != 0 {
		t.Errorf("rc = %d, want 0 (ALLOWED)", rc)
	}
	want := "10.244.1.5 -> 192.0.2.1: ALLOWED\n" +
		"  cnp-adm-eg-X-web-out: tcp dport 443 ip saddr . ip daddr @dns4-ABC accept\n" +
		"  learned from DNS (Admin cnp/web-out egress rule 0 'api': Accept, set dns4-ABC):\n" +
		"    api.example.com (CNAME chain to edge.example.net) answered 192.0.2.1 at 2026-01-01T11:00:00Z, expires 2026-01-01T11:00:30Z (TTL 30s)\n" +
		"  learned from DNS (dns4-DEF):\n" +
		"    www.example.org answered 192.0.2.1 at 2026-01-01T11:00:00Z, expires 2026-01-01T12:00:00Z (TTL 1h0m0s)\n"
	if out.String() != want {
		t.Errorf("printed\n%s\nwant\n%s", out.String(), want)
	}
}
