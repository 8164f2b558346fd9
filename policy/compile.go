package policy

import (
	"fmt"
	"slices"
	"sort"

	"github.com/weir-cni/weir/ruleset"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// labelNamespaceName is set on every namespace by the API server; weir adds it
// when a snapshot (e.g. from hand-written manifests) lacks it, so that
// selectors written for a real cluster behave the same.
const labelNamespaceName = "kubernetes.io/metadata.name"

// Compile turns a snapshot into the ruleset of its node. It is pure: no
// clock, no I/O, and the output is sorted, so equal snapshots give equal
// rulesets. It is a fresh Compiler's first Compile; keep a Compiler to
// compile a sequence of snapshots incrementally.
//
// Only local pods (Pod.Node == Node.Name, not hostNetwork) are isolated here;
// peers may be any pod of the cluster. hostNetwork pods are never policed
// and never match pod selectors: their traffic carries node addresses, which
// only ipBlock peers can match. A pod or policy listed twice (same namespace
// and name) counts once, as its last occurrence.
func Compile(s Snapshot) ruleset.Ruleset {
	return NewCompiler().Compile(s)
}

// policyBuilder builds the objects of one policy, reading the Compiler's
// indexes and recording in ps which of them it used.
type policyBuilder struct {
	x  *Compiler
	ps *policyState
	// dry compiles a policy that selects no local pod: its input is still
	// checked and reported, but it adds nothing to the ruleset.
	dry      bool
	groups   groupList
	chains   map[string]*ruleset.Chain
	problems []string
	selected [2][]*podRec
	pass     [2]bool // Admin Pass rules, per direction
	// dns are the rules with domainNames peers; specKey is the policy's
	// spec as JSON, once one needs it (dns.go).
	dns     []dnsOut
	specKey string
	// elems counts the elements of the groups the rules use; over is set
	// once they pass MaxPolicyElements (see limits.go). podElems is the
	// part of elems charged for groups of selector peers' pods.
	elems    int
	podElems int
	over     bool
	// lookups holds the peer alternatives of the rule compiling.
	lookups peerLookups
}

func policyKey(p *networkingv1.NetworkPolicy) string { return p.Namespace + "/" + p.Name }

func (c *policyBuilder) problem(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// group records that the policy's rules look up the elements (sorted,
// without id) of definition def in shared set set, and returns the
// definition's id and the set holding its group: set, or its shard
// (shardName) when set is split. elems computes them, once per Compile
// call: a definition gives the same elements to every policy using it.
// bound is at least their number: it is charged against the policy's cap
// first, and a policy over the cap computes no more groups (it is dropped
// whole when its rules are done).
func (c *policyBuilder) group(set, def string, bound int, elems func() []ruleset.Elem) (uint32, string) {
	return c.groupFrom(set, def, bound, nil, func(id uint32) []ruleset.Elem { return prefixElems(id, elems()) })
}

// groupFrom is group for elements that depend on the members of the
// cached results from alone: when the group in use was computed from the
// same results, none of whose members changed since (see podEntry.ver),
// its elements are taken again instead of computed. Its elems computes
// the elements prefixed by the id it is given (peerElems does it in one
// pass).
func (c *policyBuilder) groupFrom(set, def string, bound int, from []*podEntry, elems func(id uint32) []ruleset.Elem) (uint32, string) {
	k := groupKey{set, def}
	if g := c.groups.find(k); g != nil {
		return c.defID(def), g.set
	}
	// The bound, not the elements, even of a group another policy of
	// this call built: a policy's charge must not depend on which policy
	// builds a shared group first (the order policies compile in).
	g, ok := c.memo(k)
	if !c.charge(bound) {
		return 0, set
	}
	if from != nil {
		c.podElems += bound
	}
	id := c.defID(def)
	if !ok {
		g = groupOut{set: shardName(set, id), base: set, def: def, id: id, from: from, vers: versions(from)}
		g.elems = c.x.groupElems(g, elems)
		g = c.keepMemo(k, g)
	}
	c.groups.add(k, g)
	return id, g.set
}

// groupList is the groups one policy's rules use, in first-use order,
// indexed by key once there are more than a few.
type groupList struct {
	list  []groupOut
	index map[groupKey]int
}

// maxListedGroups is how many groups a groupList searches one by one.
const maxListedGroups = 16

func (l *groupList) find(k groupKey) *groupOut {
	if l.index != nil {
		if i, ok := l.index[k]; ok {
			return &l.list[i]
		}
		return nil
	}
	for i := range l.list {
		if g := &l.list[i]; g.base == k.set && g.def == k.def {
			return g
		}
	}
	return nil
}

// add appends g, of key k, which the list does not hold.
func (l *groupList) add(k groupKey, g groupOut) {
	l.list = append(l.list, g)
	if l.index == nil && len(l.list) > maxListedGroups {
		l.index = make(map[groupKey]int, 2*len(l.list))
		for i, g := range l.list[:len(l.list)-1] {
			l.index[groupKey{g.base, g.def}] = i
		}
	}
	if l.index != nil {
		l.index[k] = len(l.list) - 1
	}
}

// reset empties the list.
func (l *groupList) reset() { l.list, l.index = l.list[:0], nil }

func (c *policyBuilder) addChain(ch ruleset.Chain) {
	if !c.dry {
		c.chains[ch.Name] = &ch
	}
}

// output sorts what the policy built; the result is shared by the rulesets
// of later calls and never modified.
func (c *policyBuilder) output() policyOut {
	out := policyOut{problems: c.problems, selected: c.selected, pass: c.pass, dns: c.dns}
	if c.dry {
		out.selected, out.pass, out.dns = [2][]*podRec{}, [2]bool{}, nil
		return out
	}
	out.groups = slices.Clip(c.groups.list) // the builder is done with it
	out.chains = make([]ruleset.Chain, 0, len(c.chains))
	counters := 0
	for _, ch := range c.chains {
		out.chains = append(out.chains, *ch)
		counters += len(ch.Rules)
	}
	out.counters = make([]ruleset.Counter, 0, counters) // at most one a rule
	for _, ch := range out.chains {
		for i := range ch.Rules { // never modified: the counters point to their owners
			if r := &ch.Rules[i]; r.Counter != "" {
				out.counters = append(out.counters, ruleset.Counter{Name: r.Counter, OwnerRef: &r.Owner})
			}
		}
	}
	slices.SortFunc(out.counters, compareCounters)
	out.counters = slices.CompactFunc(out.counters, func(a, b ruleset.Counter) bool { return a.Name == b.Name })
	sort.Slice(out.chains, func(i, j int) bool { return out.chains[i].Name < out.chains[j].Name })
	return out
}

// policyTypes is PolicyTypes, reporting unknown types as problems.
func (c *policyBuilder) policyTypes(p *networkingv1.NetworkPolicy) (ingress, egress bool) {
	ingress, egress, unknown := PolicyTypes(p)
	for _, t := range unknown {
		c.problem("%s: unknown policyType %q ignored", policyKey(p), t)
	}
	return ingress, egress
}

// PolicyTypes applies the API's defaulting: which directions p isolates
// the pods it selects in. Ingress always, Egress only when spec.egress is
// non-empty, unless spec.policyTypes says otherwise; unknown types are
// returned, and ignored.
func PolicyTypes(p *networkingv1.NetworkPolicy) (ingress, egress bool, unknown []networkingv1.PolicyType) {
	if len(p.Spec.PolicyTypes) == 0 {
		return true, len(p.Spec.Egress) > 0, nil
	}
	for _, t := range p.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		default:
			unknown = append(unknown, t)
		}
	}
	return ingress, egress, unknown
}

// compilePolicy builds the chains and groups of one policy and records which
// local pods it isolates. A policy whose podSelector cannot be parsed isolates
// every local pod of its namespace and allows nothing (fail closed).
//
// A policy that selects no local pod is only checked (its problems are
// reported) and adds nothing: as Calico's Felix does, a node renders only
// the policies of its own pods, so its table grows with them, not with the
// cluster. A pod that becomes the first local pod selected by a policy
// therefore adds that policy's chains and groups.
func (c *policyBuilder) compilePolicy(p *networkingv1.NetworkPolicy) {
	key := c.ps.key
	ingress, egress := c.policyTypes(p)
	skey, selector, err := c.selector(&p.Spec.PodSelector)
	valid := err == nil
	if !valid {
		c.problem("%s: podSelector: %v (selects every pod of %s, allows nothing)", key, err, p.Namespace)
		skey, selector = "", labels.Everything()
	}
	tooBig := false
	if n := policyItems(&p.Spec); n > MaxPolicyItems {
		c.problem("%s: %d rules, peers, excepts and ports, more than the %d weir compiles in one policy (not applied: "+
			"the pods it selects are isolated and it allows nothing)", key, n, MaxPolicyItems)
		tooBig = true
	}
	selected := slices.Clone(c.podEntry(p.Namespace, skey, selector, true).list)
	c.dry = len(selected) == 0
	dirs := []struct {
		on  bool
		dir direction
		i   int
	}{{ingress, dirIngress, 0}, {egress, dirEgress, 1}}
	for _, d := range dirs {
		if !d.on {
			continue
		}
		chain := ruleset.Chain{Name: policyChainNameHash(d.dir, c.ps.hash, key)}
		if valid && !tooBig {
			chain.Rules = c.policyRules(p, d.dir, selected, skey)
		}
		c.addChain(chain)
		c.selected[d.i] = selected
	}
	if c.over { // never half-applied: every rule goes
		c.problem("%s: its rules need more than %d set elements, the most weir gives one policy (not applied: "+
			"the pods it selects are isolated and it allows nothing)", key, elementCap)
		c.groups.reset()
		for _, ch := range c.chains {
			ch.Rules = nil
		}
	}
}

func (c *policyBuilder) policyRules(p *networkingv1.NetworkPolicy, d direction, selected []*podRec, skey string) []ruleset.Rule {
	var rules []ruleset.Rule
	if d == dirIngress {
		for i, r := range p.Spec.Ingress {
			in := c.npRule(p, d, i, selected, skey)
			in.peers, in.ports = r.From, r.Ports
			rules = c.compileRule(rules, in)
		}
		return rules
	}
	for i, r := range p.Spec.Egress {
		in := c.npRule(p, d, i, selected, skey)
		in.peers, in.ports = r.To, r.Ports
		rules = c.compileRule(rules, in)
	}
	return rules
}
