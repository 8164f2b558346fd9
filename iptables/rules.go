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

// site is where one model rule is translated: its table, the iptables
// chain the rule goes in, the rule's index in its model chain, and what
// accept means there (see builder.contexts).
type site struct {
	t      *table
	parent string
	k      int
	ctx    string
}

// exit says how the chains a rule enters (its lookups, its map, its
// action) end. Usually the rule enters them with -j, and RETURN or
// falling off goes on after the rule. A rule that may return from its
// chain (ruleset.VerdictReturn, or a verdict map holding one) enters them
// with -g instead (own), so that RETURN leaves the rule's chain as nft's
// return does; packets that go on after such a rule then go (-g) to rest,
// the chain holding the rules that follow it.
type exit struct {
	own  bool
	rest string
}

// rules translates the model rules of one chain into ch; the first is
// number from of the model chain. When a rule may return from the chain,
// the rules after it go to its rest chain.
func (b *builder) rules(t *table, ch *chain, rules []ruleset.Rule, from int, ctx string) {
	for i, r := range rules {
		if rest := b.rule(t, ch, from+i, r, ctx); rest != nil {
			b.rules(t, rest, rules[i+1:], from+i+1, ctx)
			return
		}
	}
}

// rule translates rule r, number k of chain ch, whose accept means ctx.
// Inline matches (conntrack state, interfaces, marks, a one-element set)
// stay in the rule; each other lookup becomes a chain with one rule per
// element going (-g) to the chain of the next lookup, the last carrying
// the verdict. A packet that misses a lookup goes on after this rule,
// exactly like a failed match; a negated lookup goes on at any element and
// on to the next lookup otherwise. A rule that logs or marks the packet
// and then takes a verdict goes to an action chain that does all (see
// target). It returns the rest chain the rules after r go to, if r needs
// one (see exit).
func (b *builder) rule(t *table, ch *chain, k int, r ruleset.Rule, ctx string) *chain {
	if r.TProxy != nil {
		b.problem(dataplane.RuleProblem(r, "tproxy has no equivalent here (rule skipped)"))
		return nil
	}
	head, lookups, ok := b.matches(r)
	v, st := r.Verdict, statements{log: r.Log, mark: r.Mark}
	switch {
	case !ok, v.Kind == ruleset.VerdictVMap && !b.fieldsOK(v.Fields):
		return nil
	case v.Kind == ruleset.VerdictVMap && r.Counter == "" && st.none() && b.emptyMap(v.Map):
		return nil // decides nothing: costs nothing
	case len(lookups) == 0 && v.Kind == ruleset.VerdictNone && st.none():
		return nil
	case len(lookups) == 0 && v.Kind == ruleset.VerdictNone && (st.log == nil || st.mark == nil):
		ch.rules = append(ch.rules, st.inline(head)) // one statement goes on with the next rule
		return nil
	}
	at := site{t: t, parent: ch.name, k: k, ctx: ctx}
	var e exit
	var rest *chain
	if b.returns(v) {
		e.own = true
		if len(lookups) > 0 || v.Kind == ruleset.VerdictVMap {
			rest = t.chain(subName(ch.name, k, "rest"))
			e.rest = rest.name
		}
	}
	if len(lookups) == 0 {
		head.target, head.goTo = b.target(at, v, st, e)
		head.goTo = head.goTo && e.own // -j: the chain returns after the rule
		ch.rules = append(ch.rules, head)
	} else {
		b.lookupChains(at, ch, head, lookups, r, e)
	}
	if rest != nil && !ch.rules[len(ch.rules)-1].leaves() {
		ch.rules = append(ch.rules, rule{target: rest.name, goTo: true})
	}
	return rest
}

// matches returns the inline matches of r as a rule without a target, and
// its other lookups; ok is false when r never matches in this family (or
// holds a match it does not know, a problem).
func (b *builder) matches(r ruleset.Rule) (head rule, lookups []lookup, ok bool) {
	head = rule{comment: r.Owner.String(), counter: r.Counter}
	ct := ^uint32(0)
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
		case ruleset.MatchMark:
			if m.Mark == 0 && m.Negate {
				return head, nil, false // every bit of none is always set
			}
			if m.Mark != 0 {
				head.marks = append(head.marks, markTest{bits: m.Mark, negate: m.Negate})
			}
			continue
		}
		var elems []rule
		switch m.Kind {
		case ruleset.MatchPort:
			elems = portRules(m)
		case ruleset.MatchLookup:
			if !b.fieldsOK(m.Fields) {
				return head, nil, false // the other family's rule
			}
			s, _ := b.rs.Set(m.Set)
			elems = setRules(s, m.ID, m.Fields)
		default:
			b.problem(dataplane.RuleProblem(r, fmt.Sprintf("unknown match kind %d (rule skipped)", m.Kind)))
			return head, nil, false
		}
		switch {
		case len(elems) == 0 && !m.Negate:
			return head, nil, false // never matches
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
		return head, nil, false // no state satisfies every conntrack match
	}
	if ct != ^uint32(0) {
		head.ctStates = ctStates(ct)
	}
	return head, lookups, true
}

// statements are what a rule does before its verdict, in the order nft
// runs them: log, then set the mark.
type statements struct {
	log  *ruleset.Log
	mark *ruleset.MarkSet
}

func (st statements) none() bool { return st.log == nil && st.mark == nil }

// inline returns r doing the one statement of st: NFLOG, under the log's
// rate limit, or MARK. Both go on with the next rule.
func (st statements) inline(r rule) rule {
	if l := st.log; l != nil {
		r.nflog = &nflog{group: l.Group, prefix: l.Prefix}
		if l.Rate > 0 {
			r.limit = strconv.FormatUint(uint64(l.Rate), 10) + "/sec"
		}
		return r
	}
	r.setMark = st.mark
	return r
}

// rules are the rules of an action chain doing st, matching every packet.
// The log's rate limit holds back the log only, never what follows it.
func (st statements) rules() []rule {
	var out []rule
	if st.log != nil {
		out = append(out, statements{log: st.log}.inline(rule{}))
	}
	if st.mark != nil {
		out = append(out, statements{mark: st.mark}.inline(rule{}))
	}
	return out
}

// lookupChains writes the head of rule r into ch and the chains of its
// lookups. The rules that reach the verdict, in the last lookup's chain,
// count for r; the head only enters the lookups.
func (b *builder) lookupChains(at site, ch *chain, head rule, lookups []lookup, r ruleset.Rule, e exit) {
	subs := make([]*chain, len(lookups))
	for j, l := range lookups {
		subs[j] = at.t.chain(b.fresh(at.t, l.set, subName(ch.name, at.k, strconv.Itoa(j))))
	}
	head.target, head.goTo, head.counter = subs[0].name, e.own, ""
	ch.rules = append(ch.rules, head)
	goOn := rule{target: targetReturn}
	if e.own {
		goOn = rule{target: e.rest, goTo: true}
	}
	for j, l := range lookups {
		next := rule{goTo: true}
		if j+1 < len(lookups) {
			next.target = subs[j+1].name
		} else {
			next.target, next.goTo = b.target(at, r.Verdict, statements{log: r.Log, mark: r.Mark}, e)
			next.counter = r.Counter
		}
		for _, el := range l.elems {
			if l.negate {
				el.target, el.goTo = goOn.target, goOn.goTo
			} else {
				el.target, el.goTo, el.counter = next.target, next.goTo, next.counter
			}
			subs[j].rules = append(subs[j].rules, el)
		}
		switch {
		case l.negate:
			subs[j].rules = append(subs[j].rules, next)
		case e.own:
			subs[j].rules = append(subs[j].rules, goOn)
		}
	}
}

// returns tells whether verdict v may return from the rule's chain.
func (b *builder) returns(v ruleset.Verdict) bool {
	switch v.Kind {
	case ruleset.VerdictReturn:
		return true
	case ruleset.VerdictVMap:
		m, _ := b.rs.Set(v.Map)
		for _, e := range m.Elems {
			if e.MapVerdict().Kind == ruleset.VerdictReturn {
				return true
			}
		}
	}
	return false
}

// emptyMap tells whether the verdict map name has no element.
func (b *builder) emptyMap(name string) bool {
	m, _ := b.rs.Set(name)
	return len(m.Elems) == 0
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

// target returns how a rule in one of the chains the rule at enters (a
// lookup's, its map's, an action's: they are entered by -g) reaches
// verdict v after the statements st: the target, and whether it is a
// goto. A jump is a goto, so that the jumped-to chain falling through goes
// on after the rule, as in nftables.
//
// A log or a mark and a verdict take several iptables rules, NFLOG and
// MARK being no verdicts: they go to an action chain holding them all, so
// that the verdict applies to exactly the packets the rule matched (a
// second rule matching the mark would also take packets that came with
// it; a rate-limited NFLOG rule holding the verdict would let the packets
// over the rate go on), and the rule counts once.
func (b *builder) target(at site, v ruleset.Verdict, st statements, e exit) (string, bool) {
	if !st.none() {
		return b.actionChain(at, v, st, e), true
	}
	switch v.Kind {
	case ruleset.VerdictAccept:
		return at.ctx, false
	case ruleset.VerdictDrop:
		return targetDrop, false
	case ruleset.VerdictMasquerade:
		return targetMasquerade, false
	case ruleset.VerdictReturn:
		return targetReturn, false // e.own: leaves the rule's chain
	case ruleset.VerdictJump:
		return b.jumpTarget(at, v.Chain, e), true
	case ruleset.VerdictVMap:
		return b.vmap(at, v, e), true
	}
	if e.own { // no verdict: go on after the rule
		return e.rest, true
	}
	return targetReturn, false
}

// actionChain returns the action chain that runs st and then reaches v.
// Statements without a verdict of their own (that go on, or return where
// RETURN does) are the chain's only rules: one chain per mark serves every
// rule that only marks.
func (b *builder) actionChain(at site, v ruleset.Verdict, st statements, e exit) string {
	target, goTo := b.target(at, v, statements{}, e)
	step := "mark"
	if st.log != nil {
		step = "log"
	}
	name := subName(at.parent, at.k, step)
	rules := st.rules()
	switch {
	case target != targetReturn:
		rules = append(rules, rule{target: target, goTo: goTo})
	case st.log == nil:
		name = fmt.Sprintf("%smark-%08x-%08x", Prefix, st.mark.Value, st.mark.Mask)
	}
	c := at.t.chain(name)
	c.rules = rules
	return c.name
}

// jumpTarget returns the chain a jump to model chain name goes to. Where
// the rule's chains return from the rule's own chain (e.own), the jump
// goes through a chain that jumps (-j) and then goes on after the rule.
func (b *builder) jumpTarget(at site, name string, e exit) string {
	c := b.instance(at.t, name, at.ctx)
	if !e.own {
		return c
	}
	then := at.t.chain(chainName(c + " then " + e.rest))
	then.rules = []rule{{target: c}, {target: e.rest, goTo: true}}
	return then.name
}

// vmap writes a verdict map as a chain of one rule per key, each going to
// its element's verdict.
func (b *builder) vmap(at site, v ruleset.Verdict, e exit) string {
	m, _ := b.rs.Set(v.Map)
	mc := at.t.chain(b.fresh(at.t, v.Map, subName(at.parent, at.k, "map")))
	for _, el := range m.Elems {
		if len(el.Key) != len(v.Fields) {
			continue
		}
		target, goTo := b.target(at, el.MapVerdict(), statements{}, e)
		for _, r := range elemRules(m, v.Fields, el) {
			r.target, r.goTo = target, goTo
			mc.rules = append(mc.rules, r)
		}
	}
	if e.own {
		mc.rules = append(mc.rules, rule{target: e.rest, goTo: true})
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
