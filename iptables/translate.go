package iptables

import (
	"fmt"
	"slices"
	"sort"

	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/ruleset"
)

// hooks maps an nftables base chain (type, hook) to the iptables table and
// built-in chain it runs from, in the order tables are written.
var hooks = []struct {
	typ     string
	hook    ruleset.Hook
	table   string
	builtin string
}{
	{"filter", ruleset.HookPrerouting, "raw", "PREROUTING"},
	{"filter", ruleset.HookInput, "filter", "INPUT"},
	{"filter", ruleset.HookForward, "filter", "FORWARD"},
	{"filter", "output", "filter", "OUTPUT"},
	{"nat", "prerouting", "nat", "PREROUTING"},
	{"nat", "output", "nat", "OUTPUT"},
	{"nat", ruleset.HookPostrouting, "nat", "POSTROUTING"},
}

// builder translates one family of a model ruleset.
type builder struct {
	rs  ruleset.Ruleset
	v6  bool
	out *familyRules
	// contexts[chain] is every accept target the chain is reached with;
	// a chain reached with more than one is emitted once per target.
	contexts map[string]map[string]bool
	emitted  map[string]bool
}

// priorityConntrack is the priority of conntrack in the prerouting hook:
// the raw table runs before it, and iptables has no table to filter
// prerouting packets after it.
const priorityConntrack = -200

// placed tells whether the translation places base chain c: the
// prerouting filter chains after conntrack (the DNS steering of
// domainNames rules) have no iptables equivalent and are left out.
func placed(c ruleset.Chain) bool {
	return c.Base != nil && (c.Base.Type != "filter" || c.Base.Hook != ruleset.HookPrerouting || c.Base.Priority < priorityConntrack)
}

// build translates rs into the chains of one family. It is pure.
// domainNames rules (rs.DNS) are reported: nothing steers DNS queries to
// the proxy here, so their names allow nothing.
func build(rs ruleset.Ruleset, v6 bool) *familyRules {
	b := &builder{rs: rs, v6: v6, out: &familyRules{v6: v6}, contexts: map[string]map[string]bool{}, emitted: map[string]bool{}}
	for _, d := range rs.DNS {
		b.problem(dataplane.Problem{Policy: d.Owner.PolicyKey(), Direction: string(d.Owner.Direction), Rule: d.Owner.Rule,
			Message: "domainNames are enforced by the nftables backend only; this rule's domainNames allow nothing"})
	}
	tables := map[string]*table{}
	for _, h := range hooks {
		var bases []ruleset.Chain
		for _, c := range rs.Chains {
			if c.Base != nil && c.Base.Type == h.typ && c.Base.Hook == h.hook && placed(c) {
				bases = append(bases, c)
			}
		}
		if len(bases) == 0 {
			continue
		}
		sort.SliceStable(bases, func(i, j int) bool { return bases[i].Base.Priority < bases[j].Base.Priority })
		t := tables[h.table]
		if t == nil {
			t = &table{name: h.table, byName: map[string]*chain{}}
			tables[h.table] = t
			b.out.tables = append(b.out.tables, t)
		}
		b.hook(t, h.builtin, bases)
	}
	b.out.tables = slices.DeleteFunc(b.out.tables, func(t *table) bool { return len(t.chains) == 0 })
	for _, c := range rs.Chains {
		switch {
		case c.Base == nil || b.emitted[c.Name]:
		case !placed(c):
			b.problem(dataplane.Problem{Message: fmt.Sprintf("base chain %s: type %s hook %s priority %d, after conntrack, has no iptables equivalent (skipped)",
				c.Name, c.Base.Type, c.Base.Hook, c.Base.Priority)})
		default:
			b.problem(dataplane.Problem{Message: fmt.Sprintf("base chain %s: type %s hook %s has no iptables equivalent (skipped)", c.Name, c.Base.Type, c.Base.Hook)})
		}
	}
	return b.out
}

// hook writes the top chain of one built-in chain: the rules every base chain
// starts with (hoisted), then a jump to each base chain in priority order.
// Base chain i accepts by jumping to its pass chain, which runs base chains
// i+1... and then ACCEPTs. A hook whose base chains accept every packet
// (nothing left in them once empty maps are skipped but accepts: the input
// hook without Admin tier egress policies) gets no chain and no jump: it
// costs nothing, and the built-in chain decides.
func (b *builder) hook(t *table, builtin string, bases []ruleset.Chain) {
	before := len(t.chains)
	defer func() {
		if acceptsAll(t, before, bases) {
			for _, c := range t.chains[before:] {
				delete(t.byName, c.name)
			}
			t.chains, t.jumps = t.chains[:before], t.jumps[:len(t.jumps)-1]
		}
	}()
	top := t.chain(Prefix + builtin)
	t.jumps = append(t.jumps, jump{builtin: builtin, target: top.name})
	prefix := commonPrefix(bases)
	for _, r := range bases[0].Rules[:prefix] {
		b.rule(t, top, len(top.rules), r, targetAccept)
	}
	ctx := make([]string, len(bases))
	for i, c := range bases {
		ctx[i] = targetAccept
		if i < len(bases)-1 {
			ctx[i] = chainName(c.Name + "-pass")
		}
		b.reach(c.Name, ctx[i], 0)
	}
	for _, c := range bases {
		top.rules = append(top.rules, rule{comment: c.Name, target: chainName(c.Name)})
	}
	for i, c := range bases {
		b.emitted[c.Name] = true
		b.rules(t, t.chain(chainName(c.Name)), c.Rules[prefix:], prefix, ctx[i])
		if i == len(bases)-1 {
			continue
		}
		pass := t.chain(ctx[i])
		for _, next := range bases[i+1:] {
			pass.rules = append(pass.rules, rule{comment: c.Name + " accepted: " + next.Name + " decides", target: chainName(next.Name)})
		}
		pass.rules = append(pass.rules, rule{target: targetAccept})
	}
}

// acceptsAll tells whether the chains of one hook, from t.chains[first]
// (its top chain) on, accept every packet: every rule of the top chain
// before its jumps and of each base chain accepts (a base chain's accept
// goes to its pass chain), counting nothing, and falling off accepts too.
func acceptsAll(t *table, first int, bases []ruleset.Chain) bool {
	top := t.chains[first]
	if !onlyAccepts(top.rules[:len(top.rules)-len(bases)], targetAccept) {
		return false
	}
	for i, c := range bases {
		accept := targetAccept
		if i < len(bases)-1 {
			accept = chainName(c.Name + "-pass")
		}
		if !onlyAccepts(t.byName[chainName(c.Name)].rules, accept) {
			return false
		}
	}
	return true
}

// onlyAccepts tells whether every rule goes to accept, counting nothing.
func onlyAccepts(rules []rule, accept string) bool {
	for _, r := range rules {
		if r.target != accept || r.counter != "" || r.nflog != nil || r.setMark != nil {
			return false
		}
	}
	return true
}

// commonPrefix counts the leading rules every base chain shares that test
// conntrack state only and accept or drop: they run once, in the top chain.
func commonPrefix(bases []ruleset.Chain) int {
	n := 0
	for ; ; n++ {
		for _, c := range bases {
			if n >= len(c.Rules) || c.Rules[n].String() != bases[0].Rules[n].String() {
				return n
			}
		}
		r := bases[0].Rules[n]
		if r.Verdict.Kind != ruleset.VerdictAccept && r.Verdict.Kind != ruleset.VerdictDrop {
			return n
		}
		for _, m := range r.Matches {
			if m.Kind != ruleset.MatchCtState {
				return n
			}
		}
	}
}

// reach records the accept targets each chain is reached with.
func (b *builder) reach(name, ctx string, depth int) {
	if depth > 64 || b.contexts[name][ctx] {
		return
	}
	if b.contexts[name] == nil {
		b.contexts[name] = map[string]bool{}
	}
	b.contexts[name][ctx] = true
	c, ok := b.rs.Chain(name)
	if !ok {
		return
	}
	for _, r := range c.Rules {
		switch r.Verdict.Kind {
		case ruleset.VerdictJump:
			b.reach(r.Verdict.Chain, ctx, depth+1)
		case ruleset.VerdictVMap:
			m, _ := b.rs.Set(r.Verdict.Map)
			for _, e := range m.Elems {
				if v := e.MapVerdict(); v.Kind == ruleset.VerdictJump {
					b.reach(v.Chain, ctx, depth+1)
				}
			}
		}
	}
}

// instance is the iptables name of model chain name reached with ctx; it
// emits the chain the first time.
func (b *builder) instance(t *table, name, ctx string) string {
	ipt := chainName(name)
	if len(b.contexts[name]) > 1 {
		ipt = chainName(name + " via " + ctx)
	}
	if _, ok := t.byName[ipt]; ok {
		return ipt
	}
	ch := t.chain(ipt)
	if c, ok := b.rs.Chain(name); ok {
		b.rules(t, ch, c.Rules, 0, ctx)
	} else {
		b.problem(dataplane.Problem{Message: "missing chain " + name + " (drops)"})
		ch.rules = append(ch.rules, rule{target: targetDrop})
	}
	return ipt
}

// problem records a part of the ruleset the translation leaves out.
func (b *builder) problem(p dataplane.Problem) {
	b.out.problems = append(b.out.problems, p)
}

func (b *builder) fieldOK(f ruleset.Field) bool {
	switch f {
	case ruleset.FieldIPSaddr, ruleset.FieldIPDaddr:
		return !b.v6
	case ruleset.FieldIP6Saddr, ruleset.FieldIP6Daddr:
		return b.v6
	}
	return true
}

func (b *builder) fieldsOK(fs []ruleset.Field) bool {
	for _, f := range fs {
		if !b.fieldOK(f) {
			return false
		}
	}
	return true
}
