// Command weirctl is the operator's view into a node's weir-agent: status,
// the node's ruleset, explain (would this connection be allowed, and by
// which policy rule), and audit (what no policy isolates). It talks to the agent's local socket; main only wires
// flags.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/conf"
)

const usage = `usage: weirctl [--socket PATH] COMMAND

commands:
  status                          is the agent synced, when did it last sync, problems
  rules                           the node's nftables table as the agent compiled it
  explain SRC DST [PROTO/]PORT    would SRC reach DST on PORT? SRC and DST are IPs or
                                  namespace/pod; PROTO is tcp (default), udp or sctp
  audit [-o table|json]           namespaces without a NetworkPolicy, and pods no policy
                                  isolates for ingress and/or egress, as the agent sees them

exit status: 0 ok; 1 the agent could not answer; 2 bad usage; 3 explain: DENIED,
audit: something is open (a namespace without policy or a pod not isolated)
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weirctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", conf.DefaultAgentSocket, "weir-agent's unix socket")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the agent")
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	req, output, err := request(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "weirctl: %v\n\n", err)
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := agentapi.Call(ctx, *socket, req)
	if err != nil {
		fmt.Fprintf(stderr, "weirctl: %v\n", err)
		return 1
	}
	if req.Op == agentapi.OpAudit {
		return printAudit(stdout, output, resp.Result)
	}
	return print(stdout, req.Op, resp.Result)
}

// request parses the command line after the global flags into the
// request for the agent and the output format ("" when the command has
// one only).
func request(args []string) (agentapi.Request, string, error) {
	if len(args) == 0 {
		return agentapi.Request{}, "", fmt.Errorf("no command")
	}
	switch args[0] {
	case "status":
		return agentapi.Request{Op: agentapi.OpStatus}, "", nil
	case "rules":
		return agentapi.Request{Op: agentapi.OpRules}, "", nil
	case "audit":
		fs := flag.NewFlagSet("audit", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		output := fs.String("o", "table", "table or json")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
			return agentapi.Request{}, "", fmt.Errorf("audit takes only -o table|json")
		}
		if *output != "table" && *output != "json" {
			return agentapi.Request{}, "", fmt.Errorf("audit -o %q: want table or json", *output)
		}
		return agentapi.Request{Op: agentapi.OpAudit}, *output, nil
	case "explain":
		if len(args) != 4 {
			return agentapi.Request{}, "", fmt.Errorf("explain takes SRC DST [PROTO/]PORT")
		}
		proto, port := "TCP", args[3]
		if p, rest, ok := strings.Cut(args[3], "/"); ok {
			proto, port = strings.ToUpper(p), rest
		}
		var n int
		if _, err := fmt.Sscanf(port, "%d", &n); err != nil || n < 0 || n > 65535 {
			return agentapi.Request{}, "", fmt.Errorf("port %q is not a number from 0 to 65535", port)
		}
		return agentapi.Request{Op: agentapi.OpExplain, Src: args[1], Dst: args[2], Protocol: proto, Port: n}, "", nil
	}
	return agentapi.Request{}, "", fmt.Errorf("unknown command %q", args[0])
}

// printLearned prints a DNS answer that let the source reach dst: the
// set and rule, the name asked (and the end of its CNAME chain), when it
// was learned and when it expires, in UTC.
func printLearned(w io.Writer, dst string, l agentapi.ExplainLearned) {
	rule := l.Set
	if l.Owner != nil {
		rule = l.Owner.Text + ", set " + l.Set
	}
	name := l.Name
	if l.Answer != l.Name {
		name += " (CNAME chain to " + l.Answer + ")"
	}
	fmt.Fprintf(w, "  learned from DNS (%s):\n    %s answered %s at %s, expires %s (TTL %s)\n", rule, name, dst,
		l.Learned.UTC().Format(time.RFC3339), l.Expires.UTC().Format(time.RFC3339), l.Expires.Sub(l.Learned).Round(time.Second))
}

func print(w io.Writer, op string, raw json.RawMessage) int {
	switch op {
	case agentapi.OpRules:
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			fmt.Fprintf(w, "%s\n", raw)
			return 1
		}
		fmt.Fprint(w, text)
		return 0
	case agentapi.OpExplain:
		var e agentapi.Explanation
		if err := json.Unmarshal(raw, &e); err != nil {
			fmt.Fprintf(w, "%s\n", raw)
			return 1
		}
		verdict := "DENIED"
		if e.Allowed {
			verdict = "ALLOWED"
		}
		fmt.Fprintf(w, "%s -> %s: %s\n", e.Src, e.Dst, verdict)
		for _, s := range e.Steps {
			fmt.Fprintf(w, "  %s\n", s.Text)
		}
		for _, l := range e.Learned {
			printLearned(w, e.Dst, l)
		}
		if !e.Allowed {
			return 3
		}
		return 0
	}
	var v any
	_ = json.Unmarshal(raw, &v)
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintf(w, "%s\n", b)
	return 0
}
