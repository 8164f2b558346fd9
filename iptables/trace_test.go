package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/ruleset"
)

// traceFamily walks the rendered filter table of one family as the kernel
// would for a forwarded packet, or for one to the host (p.ToHost): FORWARD
// or INPUT (policy ACCEPT) holds only weir's jump. -j returns to the caller
// when the target falls through or RETURNs; -g replaces the current chain,
// so falling through returns to the chain that made the last -j. MARK
// rewrites the packet mark and goes on. It returns the verdict, the rules
// the packet matched and the named counters it counted into, in order.
func traceFamily(r *familyRules, p ruleset.Packet) (v ruleset.VerdictKind, steps, counted []string) {
	if p.CtState == 0 {
		p.CtState = ruleset.CtNew
	}
	builtin := "FORWARD"
	if p.ToHost {
		builtin = "INPUT"
	}
	tr := &ipTracer{p: p, mark: p.Mark}
	for _, t := range r.tables {
		if t.name != "filter" {
			continue
		}
		tr.t = t
		for _, j := range t.jumps {
			if j.builtin != builtin {
				continue
			}
			if v := tr.chain(j.target, 0); v == ruleset.VerdictDrop || v == ruleset.VerdictAccept {
				return v, tr.steps, tr.counted
			}
		}
	}
	return ruleset.VerdictAccept, append(tr.steps, builtin+": policy ACCEPT"), tr.counted
}

// tracedCounters lists the named counters the rules of a ruleset.Trace
// counted the packet into, in order.
func tracedCounters(steps []ruleset.Step) []string {
	var out []string
	for _, s := range steps {
		if s.Rule.Counter != "" {
			out = append(out, s.Rule.Counter)
		}
	}
	return out
}

type ipTracer struct {
	t       *table
	p       ruleset.Packet
	mark    uint32 // the packet mark, as MARK rules rewrite it
	steps   []string
	counted []string // the named counters of the rules in steps
}

// chain returns accept, drop, or none (fell through or RETURNed).
func (tr *ipTracer) chain(name string, depth int) ruleset.VerdictKind {
	if depth > 100 {
		tr.steps = append(tr.steps, "loop: drop")
		return ruleset.VerdictDrop
	}
	c := tr.t.byName[name]
	if c == nil {
		tr.steps = append(tr.steps, "missing chain "+name)
		return ruleset.VerdictDrop
	}
	for _, r := range c.rules {
		if !tr.matches(r) {
			continue
		}
		tr.steps = append(tr.steps, "-A "+name+" "+strings.Join(r.args(), " "))
		if r.counter != "" {
			tr.counted = append(tr.counted, r.counter)
		}
		if r.nflog != nil {
			continue // NFLOG logs and goes on
		}
		if m := r.setMark; m != nil {
			tr.mark = tr.mark&^m.Mask | m.Value
			continue // MARK goes on
		}
		switch r.target {
		case targetAccept:
			return ruleset.VerdictAccept
		case targetDrop:
			return ruleset.VerdictDrop
		case targetReturn:
			return ruleset.VerdictNone
		}
		v := tr.chain(r.target, depth+1)
		if r.goTo || v != ruleset.VerdictNone {
			return v
		}
	}
	return ruleset.VerdictNone
}

func (tr *ipTracer) matches(r rule) bool {
	p := tr.p
	if r.src != "" && !netip.MustParsePrefix(r.src).Contains(p.Src) {
		return false
	}
	if r.dst != "" && !netip.MustParsePrefix(r.dst).Contains(p.Dst) {
		return false
	}
	if r.srcRange != "" && !inRange(r.srcRange, p.Src) {
		return false
	}
	if r.dstRange != "" && !inRange(r.dstRange, p.Dst) {
		return false
	}
	if r.proto != "" && r.proto != ruleset.ProtoName(p.Proto) {
		return false
	}
	if r.dport != "" {
		lo, hi, _ := strings.Cut(r.dport, ":")
		if hi == "" {
			hi = lo
		}
		l, _ := strconv.Atoi(lo)
		h, _ := strconv.Atoi(hi)
		if int(p.DPort) < l || int(p.DPort) > h {
			return false
		}
	}
	if r.ctStates != "" && !strings.Contains(","+r.ctStates+",", ","+ctStates(p.CtState)+",") {
		return false
	}
	for _, m := range r.marks {
		if (tr.mark&m.bits == m.bits) == m.negate {
			return false
		}
	}
	return ifaceMatches(r.iif, r.notIif, p.InIface) && ifaceMatches(r.oif, r.notOif, p.OutIface) &&
		groupMatches(r.srcGroup, p.InGroup) && groupMatches(r.dstGroup, p.OutGroup)
}

// ifaceMatches is -i / -o: "weir+" is a prefix; a packet without an
// interface name matches no interface test.
func ifaceMatches(want string, negate bool, name string) bool {
	if want == "" {
		return true
	}
	if name == "" {
		return false
	}
	prefix, plus := strings.CutSuffix(want, "+")
	ok := name == want || (plus && strings.HasPrefix(name, prefix))
	return ok != negate
}

// groupMatches is --src-group / --dst-group (hex, as rendered).
func groupMatches(want string, group uint32) bool {
	if want == "" {
		return true
	}
	g, err := strconv.ParseUint(strings.TrimPrefix(want, "0x"), 16, 32)
	return err == nil && uint32(g) == group
}

func inRange(rg string, a netip.Addr) bool {
	lo, hi, _ := strings.Cut(rg, "-")
	l, h := netip.MustParseAddr(lo), netip.MustParseAddr(hi)
	return l.Compare(a) <= 0 && a.Compare(h) <= 0
}

// rendered is both families of one ruleset, for tracing.
type rendered struct{ v4, v6 *familyRules }

func renderBoth(rs ruleset.Ruleset) rendered { return rendered{build(rs, false), build(rs, true)} }

// trace picks the family of p.
func (r rendered) trace(p ruleset.Packet) (v ruleset.VerdictKind, steps, counted []string) {
	if p.Src.Unmap().Is6() {
		return traceFamily(r.v6, p)
	}
	return traceFamily(r.v4, p)
}

func packetString(p ruleset.Packet) string {
	return fmt.Sprintf("%s -> %s %s/%d %s in %s/%d out %s/%d mark %#x to host %v", p.Src, p.Dst, ruleset.ProtoName(p.Proto), p.DPort,
		ctStates(p.CtState), p.InIface, p.InGroup, p.OutIface, p.OutGroup, p.Mark, p.ToHost)
}

// differential traces packets through both the rendered chains and
// ruleset.Trace on the ruleset they come from, reporting the first five
// disagreements of a test.
type differential struct {
	t     *testing.T
	rs    ruleset.Ruleset
	r     rendered
	fails int
}

func newDifferential(t *testing.T, rs ruleset.Ruleset) *differential {
	return &differential{t: t, rs: rs, r: renderBoth(rs)}
}

// compare reports p if the two verdicts or the named counters that count
// it differ, and returns the nftables verdict and steps.
func (d *differential) compare(p ruleset.Packet) (ruleset.VerdictKind, []ruleset.Step) {
	d.t.Helper()
	wv, want := ruleset.Trace(d.rs, p)
	gv, got, gc := d.r.trace(p)
	wc := tracedCounters(want)
	switch {
	case gv != wv:
		d.errorf(p, want, got, "iptables %s, nftables %s", fixtures.VerdictName(gv), fixtures.VerdictName(wv))
	case !slices.Equal(wc, gc):
		d.errorf(p, want, got, "counted into %q by iptables, %q by nftables", gc, wc)
	}
	return wv, want
}

// errorf reports a disagreement on p with both traces, up to five a test.
func (d *differential) errorf(p ruleset.Packet, want []ruleset.Step, got []string, format string, args ...any) {
	d.t.Helper()
	if d.fails >= 5 {
		return
	}
	d.fails++
	d.t.Errorf("%s: %s\nnft:\n%s\niptables:\n%s", packetString(p), fmt.Sprintf(format, args...),
		ruleset.JoinSteps(want, "\n"), strings.Join(got, "\n"))
}
