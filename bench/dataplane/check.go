package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/weir-cni/weir/ruleset"
)

// path is what the ruleset does to a new client -> server connection, as
// ruleset.Trace walks it.
type path struct {
	// ingress and egress are the policies a new connection on testPort
	// walks (namespace/name), in order; the last one allows it.
	ingress, egress []string
}

// checkPath proves the benchmark measures what it claims: a new connection
// client -> server on testPort is accepted by a policy rule reached through
// both pods' selection chains, and one on deniedPort is dropped.
func checkPath(rs ruleset.Ruleset) (path, error) {
	var p path
	if len(rs.Problems) > 0 {
		return p, fmt.Errorf("ruleset has %d problems, first: %s", len(rs.Problems), rs.Problems[0])
	}
	pkt := ruleset.Packet{Src: netip.MustParseAddr(clientIP), Dst: netip.MustParseAddr(serverIP), Proto: ruleset.ProtoTCP, DPort: testPort}
	v, reasons := ruleset.Trace(rs, pkt)
	if v != ruleset.VerdictAccept {
		return p, fmt.Errorf("trace of client -> server port %d: not accepted:\n  %s", testPort, strings.Join(reasons, "\n  "))
	}
	p.egress = walked(reasons, "pol-eg-")
	p.ingress = walked(reasons, "pol-in-")
	if len(p.egress) == 0 || len(p.ingress) == 0 {
		return p, fmt.Errorf("trace of client -> server port %d: accepted without a policy lookup both ways:\n  %s",
			testPort, strings.Join(reasons, "\n  "))
	}
	if last := reasons[len(reasons)-1]; !strings.HasPrefix(last, "pol-in-") || !strings.Contains(last, "accept") {
		return p, fmt.Errorf("trace of client -> server port %d: not accepted by an ingress policy rule: %s", testPort, last)
	}
	pkt.DPort = deniedPort
	if v, reasons := ruleset.Trace(rs, pkt); v != ruleset.VerdictDrop {
		return p, fmt.Errorf("trace of client -> server port %d: not dropped:\n  %s", deniedPort, strings.Join(reasons, "\n  "))
	}
	return p, nil
}

// walked returns the policies whose chains (prefix pol-in- or pol-eg-) a
// trace jumped to, by the comment naming them.
func walked(reasons []string, prefix string) []string {
	var out []string
	for _, r := range reasons {
		i := strings.Index(r, ": jump "+prefix)
		if i < 0 {
			continue
		}
		if c := strings.Index(r, `comment "`); c >= 0 {
			out = append(out, strings.TrimSuffix(r[c+len(`comment "`):], `"`))
		}
	}
	return out
}
