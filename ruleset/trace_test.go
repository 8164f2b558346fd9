package ruleset

import (
	"net/netip"
	"testing"
)

// TestTraceMarksBeforeAMapLookup pins the kernel's order of a rule's
// statements: the mark is set before the verdict map is looked up, so a
// packet the map does not hold goes on marked.
func TestTraceMarksBeforeAMapLookup(t *testing.T) {
	r := Ruleset{
		Sets: []Set{{Name: "m", Key: []Type{TypeIPv4}, Map: true}},
		Chains: []Chain{{Name: "fwd", Base: &Base{Type: "filter", Hook: HookForward}, Rules: []Rule{
			{Mark: &MarkSet{Mask: 0x10, Value: 0x10}, Verdict: Verdict{Kind: VerdictVMap, Map: "m", Fields: []Field{FieldIPSaddr}}},
			{Matches: []Match{{Kind: MatchMark, Mark: 0x10}}, Verdict: Verdict{Kind: VerdictDrop}},
		}}},
	}
	p := Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: ProtoTCP, DPort: 80}
	if v, steps := Trace(r, p); v != VerdictDrop {
		t.Errorf("got %v, want drop: the map missed, the mark stays\n%s", v, JoinSteps(steps, "\n"))
	}
}
