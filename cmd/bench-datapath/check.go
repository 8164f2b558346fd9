package main

import (
	"fmt"
	"net/netip"

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
// both pods' selection chains, and one on deniedPort is dropped. With
// learned pairs, it is traced with them in their set, and checkLearned
// must pass too.
func checkPath(rs ruleset.Ruleset, l learned) (path, error) {
	var p path
	if len(rs.Problems) > 0 {
		return p, fmt.Errorf("ruleset has %d problems, first: %s", len(rs.Problems), rs.Problems[0])
	}
	if len(l.pairs) > 0 {
		if err := checkLearned(rs, l); err != nil {
			return p, err
		}
		rs = traced(rs, l)
	}
	pkt := ruleset.Packet{Src: netip.MustParseAddr(clientIP), Dst: netip.MustParseAddr(serverIP), Proto: ruleset.ProtoTCP, DPort: testPort}
	v, steps := ruleset.Trace(rs, pkt)
	if v != ruleset.VerdictAccept {
		return p, fmt.Errorf("trace of client -> server port %d: not accepted:\n  %s", testPort, ruleset.JoinSteps(steps, "\n  "))
	}
	p.egress = walked(steps, ruleset.Egress)
	p.ingress = walked(steps, ruleset.Ingress)
	if len(p.egress) == 0 || len(p.ingress) == 0 {
		return p, fmt.Errorf("trace of client -> server port %d: accepted without a policy lookup both ways:\n  %s",
			testPort, ruleset.JoinSteps(steps, "\n  "))
	}
	if last := steps[len(steps)-1]; last.Owner.Kind != ruleset.OwnerPolicyRule || last.Owner.Direction != ruleset.Ingress ||
		last.Verdict.Kind != ruleset.VerdictAccept {
		return p, fmt.Errorf("trace of client -> server port %d: not accepted by an ingress policy rule: %s", testPort, last)
	}
	pkt.DPort = deniedPort
	if v, steps := ruleset.Trace(rs, pkt); v != ruleset.VerdictDrop {
		return p, fmt.Errorf("trace of client -> server port %d: not dropped:\n  %s", deniedPort, ruleset.JoinSteps(steps, "\n  "))
	}
	return p, nil
}

// walked returns the policies (namespace/name) of direction d whose
// chains a trace jumped to, in order.
func walked(steps []ruleset.Step, d ruleset.Direction) []string {
	var out []string
	for _, s := range steps {
		if s.Owner.Kind == ruleset.OwnerPolicy && s.Owner.Direction == d && s.Verdict.Kind == ruleset.VerdictJump {
			out = append(out, s.Owner.PolicyKey())
		}
	}
	return out
}
