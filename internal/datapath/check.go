package datapath

import (
	"fmt"
	"net/netip"

	"github.com/weir-cni/weir/ruleset"
)

// Path is what a ruleset does to a new client -> server connection, as
// ruleset.Trace walks it.
type Path struct {
	// Ingress and Egress are the policies a new connection on the test
	// port walks (namespace/name), in order; the last one allows it.
	Ingress, Egress []string
}

// CheckPath proves a benchmark measures what it claims: in rs, a new
// connection client -> server on port is accepted by a policy rule
// reached through both pods' selection chains, and one on DeniedPort is
// dropped.
func CheckPath(rs ruleset.Ruleset, port int) (Path, error) {
	var p Path
	if len(rs.Problems) > 0 {
		return p, fmt.Errorf("ruleset has %d problems, first: %s", len(rs.Problems), rs.Problems[0])
	}
	pkt := ruleset.Packet{Src: netip.MustParseAddr(ClientIP), Dst: netip.MustParseAddr(ServerIP), Proto: ruleset.ProtoTCP, DPort: uint16(port)}
	v, steps := ruleset.Trace(rs, pkt)
	if v != ruleset.VerdictAccept {
		return p, fmt.Errorf("trace of client -> server port %d: not accepted:\n  %s", port, ruleset.JoinSteps(steps, "\n  "))
	}
	p.Egress = walked(steps, ruleset.Egress)
	p.Ingress = walked(steps, ruleset.Ingress)
	if len(p.Egress) == 0 || len(p.Ingress) == 0 {
		return p, fmt.Errorf("trace of client -> server port %d: accepted without a policy lookup both ways:\n  %s",
			port, ruleset.JoinSteps(steps, "\n  "))
	}
	if last := steps[len(steps)-1]; last.Owner.Kind != ruleset.OwnerPolicyRule || last.Owner.Direction != ruleset.Ingress ||
		last.Verdict.Kind != ruleset.VerdictAccept {
		return p, fmt.Errorf("trace of client -> server port %d: not accepted by an ingress policy rule: %s", port, last)
	}
	pkt.DPort = DeniedPort
	if v, steps := ruleset.Trace(rs, pkt); v != ruleset.VerdictDrop {
		return p, fmt.Errorf("trace of client -> server port %d: not dropped:\n  %s", DeniedPort, ruleset.JoinSteps(steps, "\n  "))
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
