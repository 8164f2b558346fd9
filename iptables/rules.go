package iptables

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/ruleset"
)

// lookup is one set lookup of a rule, as element rules without targets.
type lookup struct {
	set    string
	negate bool
	elems  []rule
}

// rule translates rule r, number k of chain ch, whose accept means ctx.
// Inline matches (conntrack state, a one-element set) stay in the rule; each
// other lookup becomes a chain with one rule per element going (-g) to the
// chain of the next lookup, the last carrying the verdict. A packet that
// misses a lookup falls back to ch, after this rule, exactly like a failed
// match; a negated lookup RETURNs on any element and goes on otherwise.
func (b *builder) rule(t *table, ch *chain, k int, r ruleset.Rule, ctx string) {
	head := rule{comment: r.Owner.String(), counter: r.Counter}
	ct := ^uint32(0)
	var lookups []lookup
	for _, m := range r.Matches {
		switch m.Kind {
		case ruleset.MatchCtState:
			ct &= m.CtStates
			continue
		case ruleset.MatchIifname:
			head.iif, head.notIif = m.IfPrefix+"+", m.Negate
			continue
		case ruleset.MatchOifname:
			head.oif, head.notOif = m.IfPrefix+"+", m.Negate
			continue
		case ruleset.MatchRPFail:
			// rpfilter is nft's `fib saddr . iif oif missing`: a strict
			// reverse-path lookup, which fails for local sources too.
			head.rpfail = true
			continue
		}
		var elems []rule
		switch m.Kind {
		case ruleset.MatchPort:
			elems = portRules(m)
		case ruleset.MatchLookup:
			if !b.fieldsOK(m.Fields) {
				return // the other family's rule
			}
			s, _ := b.rs.Set(m.Set)
			elems = setRules(s, m.ID, m.Fields)
		default:
			b.problem(dataplane.RuleProblem(r, fmt.Sprintf("unknown match kind %d (rule skipped)", m.Kind)))
			return
		}
		switch {
		case len(elems) == 0 && !m.Negate:
			return // never matches
		case len(elems) == 0:
			continue // always matches
		case len(elems) == 1 && !m.Negate:
			if merged, ok := merge(head, elems[0]); ok {
				head = merged
				continue
			}
		}
		set := m.Set
		if m.ID != 0 {
			set += "-" + strconv.FormatUint(uint64(m.ID), 10)
		}
		lookups = append(lookups, lookup{set: set, negate: m.Negate, elems: elems})
	}
	if ct == 0 {
		return // no state satisfies every conntrack match
	}
	if ct != ^uint32(0) {
		head.ctStates = ctStates(ct)
	}
	v := r.Verdict
	if v.Kind == ruleset.VerdictVMap && !b.fieldsOK(v.Fields) {
		return
	}
	if r.Log != nil {
		if len(lookups) > 0 || v.Kind != ruleset.VerdictNone {
			b.problem(dataplane.RuleProblem(r, "a log rule with lookups or a verdict is not translated"))
			return
		}
		head.nflog = &nflog{group: r.Log.Group, prefix: r.Log.Prefix}
		if r.Log.Rate > 0 {
			head.limit = strconv.FormatUint(uint64(r.Log.Rate), 10) + "/sec"
		}
		ch.rules = append(ch.rules, head)
		return
	}
	if len(lookups) == 0 {
		if v.Kind == ruleset.VerdictNone {
			return
		}
		head.target, head.goTo = b.verdict(t, ch.name, k, v, ctx, false)
		ch.rules = append(ch.rules, head)
		return
	}
	subs := make([]*chain, len(lookups))
	for j, l := range lookups {
		subs[j] = t.chain(b.fresh(t, l.set, subName(ch.name, k, strconv.Itoa(j))))
	}
	// The head only enters the lookups; the rules that reach the verdict,
	// in the last lookup's chain, count for r.
	head.target, head.counter = subs[0].name, ""
	ch.rules = append(ch.rules, head)
	for j, l := range lookups {
		target, goTo, counter := "", true, ""
		if j+1 < len(lookups) {
			target = subs[j+1].name
		} else {
			target, goTo = b.verdict(t, ch.name, k, v, ctx, true)
			counter = r.Counter
		}
		for _, e := range l.elems {
			if l.negate {
				e.target = targetReturn
			} else {
				e.target, e.goTo, e.counter = target, goTo, counter
			}
			subs[j].rules = append(subs[j].rules, e)
		}
		if l.negate {
			subs[j].rules = append(subs[j].rules, rule{target: target, goTo: goTo, counter: counter})
		}
	}
}

// portRules is the one rule matching a MatchPort: protocol, and the port
// range unless it is every port.
func portRules(m ruleset.Match) []rule {
	r := rule{proto: ruleset.ProtoName(m.Proto)}
	switch {
	case m.AllPorts || (m.PortFrom == 0 && m.PortTo == 65535):
	case m.PortFrom == m.PortTo:
		r.dport = strconv.Itoa(int(m.PortFrom))
	default:
		r.dport = strconv.Itoa(int(m.PortFrom)) + ":" + strconv.Itoa(int(m.PortTo))
	}
	if r.dport != "" && r.proto != "tcp" && r.proto != "udp" && r.proto != "sctp" {
		return nil // not expressible: matches nothing
	}
	return []rule{r}
}

// fresh returns the readable chain name of a set when no chain has it yet,
// else fallback.
func (b *builder) fresh(t *table, set, fallback string) string {
	if n := chainName(set); set != "" && t.byName[n] == nil {
		return n
	}
	return fallback
}

// verdict returns the target of a verdict. viaSub says the rule sits in a
// lookup chain: a jump is then a goto, so that the jumped-to chain falling
// through resumes the original chain after the rule, as in nftables.
func (b *builder) verdict(t *table, parent string, k int, v ruleset.Verdict, ctx string, viaSub bool) (string, bool) {
	switch v.Kind {
	case ruleset.VerdictAccept:
		return ctx, false
	case ruleset.VerdictDrop:
		return targetDrop, false
	case ruleset.VerdictMasquerade:
		return targetMasquerade, false
	case ruleset.VerdictJump:
		return b.instance(t, v.Chain, ctx), viaSub
	case ruleset.VerdictVMap:
		return b.vmap(t, parent, k, v, ctx), viaSub
	}
	return targetReturn, false
}

// vmap writes a verdict map as a chain of one rule per key, each going to
// its element's verdict.
func (b *builder) vmap(t *table, parent string, k int, v ruleset.Verdict, ctx string) string {
	m, _ := b.rs.Set(v.Map)
	mc := t.chain(b.fresh(t, v.Map, subName(parent, k, "map")))
	for _, e := range m.Elems {
		if len(e.Key) != len(v.Fields) {
			continue
		}
		target, goTo := b.verdict(t, parent, k, e.Verdict, ctx, true)
		for _, r := range elemRules(m, v.Fields, e) {
			r.target, r.goTo = target, goTo
			mc.rules = append(mc.rules, r)
		}
	}
	return mc.name
}

// setRules returns the match of every element of s looked up with fields.
func setRules(s ruleset.Set, id uint32, fields []ruleset.Field) []rule {
	elems := s.Elems
	if id != 0 { // the elements of id, without it (elements sort by id)
		if len(s.Key) == 0 || s.Key[0] != ruleset.TypeID {
			return nil
		}
		key := string(binary.BigEndian.AppendUint32(nil, id))
		lo := sort.Search(len(elems), func(i int) bool { return elems[i].Key[0].From >= key })
		hi := sort.Search(len(elems), func(i int) bool { return elems[i].Key[0].From > key })
		elems = make([]ruleset.Elem, 0, hi-lo)
		for _, e := range s.Elems[lo:hi] {
			elems = append(elems, ruleset.Elem{Key: e.Key[1:]})
		}
		s.Key = s.Key[1:]
	}
	if len(s.Key) != len(fields) {
		return nil
	}
	var out []rule
	for _, e := range elems {
		out = append(out, elemRules(s, fields, e)...)
	}
	return out
}

// elemRules returns the rules matching one element: usually one; more when a
// protocol range must be spelled out, or a port needs a protocol (tcp, udp
// and sctp: the protocols NetworkPolicy knows). A port of any other protocol
// cannot be expressed and matches nothing.
func elemRules(s ruleset.Set, fields []ruleset.Field, e ruleset.Elem) []rule {
	out := []rule{{}}
	for i, f := range fields {
		if i >= len(e.Key) {
			return nil
		}
		rg := e.Key[i]
		var next []rule
		for _, r := range out {
			switch f {
			case ruleset.FieldIPSaddr, ruleset.FieldIP6Saddr:
				r.src, r.srcRange = addrMatch(rg)
			case ruleset.FieldIPDaddr, ruleset.FieldIP6Daddr:
				r.dst, r.dstRange = addrMatch(rg)
			case ruleset.FieldL4Proto:
				lo, hi := int(rg.From[0]), int(rg.To[0])
				if lo == 0 && hi == 255 {
					break
				}
				for p := lo; p <= hi; p++ {
					c := r
					c.proto = ruleset.ProtoName(uint8(p))
					next = append(next, c)
				}
				continue
			case ruleset.FieldIifgroup, ruleset.FieldOifgroup:
				if rg.From != rg.To {
					return nil // a range of groups is not expressible: never built
				}
				g := "0x" + strconv.FormatUint(uint64(binary.BigEndian.Uint32([]byte(rg.From))), 16)
				if f == ruleset.FieldIifgroup {
					r.srcGroup = g
				} else {
					r.dstGroup = g
				}
			case ruleset.FieldTHDport:
				lo, hi := port(rg.From), port(rg.To)
				switch {
				case lo == 0 && hi == 65535:
				case lo == hi:
					r.dport = strconv.Itoa(lo)
				default:
					r.dport = strconv.Itoa(lo) + ":" + strconv.Itoa(hi)
				}
			}
			next = append(next, r)
		}
		out = next
	}
	var final []rule
	for _, r := range out {
		switch {
		case r.dport == "" || r.proto == "tcp" || r.proto == "udp" || r.proto == "sctp":
			final = append(final, r)
		case r.proto == "":
			for _, p := range []string{"tcp", "udp", "sctp"} {
				c := r
				c.proto = p
				final = append(final, c)
			}
		}
	}
	return final
}

// addrMatch returns a CIDR for a prefix, else an iprange.
func addrMatch(rg ruleset.Range) (cidr, iprange string) {
	lo, _ := netip.AddrFromSlice([]byte(rg.From))
	hi, _ := netip.AddrFromSlice([]byte(rg.To))
	if p, ok := ruleset.AsPrefix(lo, hi); ok {
		return p.String(), ""
	}
	return "", lo.String() + "-" + hi.String()
}

func port(s string) int { return int(s[0])<<8 | int(s[1]) }

// ctStates spells conntrack state bits as iptables-save prints them.
func ctStates(s uint32) string {
	var out []string
	for _, n := range []struct {
		bit  uint32
		name string
	}{{ruleset.CtInvalid, "INVALID"}, {ruleset.CtNew, "NEW"}, {ruleset.CtRelated, "RELATED"}, {ruleset.CtEstablished, "ESTABLISHED"}} {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, ",")
}

// merge ANDs the matches of two rules when they test different fields (or
// the same field the same way).
func merge(a, b rule) (rule, bool) {
	fields := []struct{ x, y *string }{
		{&a.src, &b.src}, {&a.dst, &b.dst}, {&a.srcRange, &b.srcRange},
		{&a.dstRange, &b.dstRange}, {&a.proto, &b.proto}, {&a.dport, &b.dport},
		{&a.srcGroup, &b.srcGroup}, {&a.dstGroup, &b.dstGroup},
	}
	for _, f := range fields {
		if *f.y == "" {
			continue
		}
		if *f.x != "" && *f.x != *f.y {
			return a, false
		}
		*f.x = *f.y
	}
	return a, true
}
