package ruleset

import (
	"fmt"
	"slices"
	"strings"
)

// Changes is what turns one ruleset into another in a single transaction.
// Pod churn shows up as element changes only (plus, at most, a selection
// chain appearing or going); a policy change as its own chains and sets.
type Changes struct {
	// Full is set when the change cannot be expressed incrementally (a set
	// or base chain changed its definition); apply the new ruleset whole.
	Full   bool
	Reason string

	AddSets   []Set      // new sets, with their elements
	DelElems  []SetElems // elements leaving surviving sets
	AddElems  []SetElems // elements joining surviving sets
	AddChains []Chain    // new chains, with their rules
	// ReplaceChains are surviving chains whose rules changed: flushed and
	// refilled with these rules.
	ReplaceChains []Chain
	DelChains     []string
	DelSets       []string
	// AddCounters are created first, DelCounters deleted last (a counter
	// in use cannot go).
	AddCounters []string
	DelCounters []string
}

// SetElems is a batch of elements of one set.
type SetElems struct {
	Set   string
	Elems []Elem
}

// Empty reports whether nothing changes.
func (c Changes) Empty() bool {
	return !c.Full && len(c.AddSets)+len(c.DelElems)+len(c.AddElems)+len(c.AddChains)+
		len(c.ReplaceChains)+len(c.DelChains)+len(c.DelSets)+len(c.AddCounters)+len(c.DelCounters) == 0
}

// String summarises the changes for logs.
func (c Changes) String() string {
	if c.Full {
		return "full: " + c.Reason
	}
	count := func(s []SetElems) int {
		n := 0
		for _, e := range s {
			n += len(e.Elems)
		}
		return n
	}
	return fmt.Sprintf("+%d sets -%d sets, +%d -%d elements, +%d chains ~%d chains -%d chains, +%d -%d counters",
		len(c.AddSets), len(c.DelSets), count(c.AddElems), count(c.DelElems),
		len(c.AddChains), len(c.ReplaceChains), len(c.DelChains), len(c.AddCounters), len(c.DelCounters))
}

// Diff computes the changes from old to new. It is pure and sorted.
func Diff(old, new Ruleset) Changes {
	if c, sorted := diff(old, new, true); sorted {
		return c
	}
	c, _ := diff(byName(old), byName(new), false)
	return c
}

// diff is Diff of two rulesets whose sets, chains and counters are sorted
// by name without repeats, as Compile makes them; with check, it checks
// that as it goes and tells whether they were (else what it found is
// meaningless).
func diff(old, new Ruleset, check bool) (Changes, bool) {
	var c Changes
	reason := ""
	if !walk(old.Sets, new.Sets, setName,
		func(o *Set) { c.DelSets = append(c.DelSets, o.Name) },
		func(s *Set) { c.AddSets = append(c.AddSets, *s) },
		func(o, s *Set) bool {
			if !sameSetDef(*o, *s) {
				reason = "set " + s.Name + " changed definition"
				return false
			}
			c.elems(*o, *s)
			return true
		}, check) {
		return c, false
	}
	if reason == "" && !walk(old.Chains, new.Chains, chainName,
		func(o *Chain) { c.DelChains = append(c.DelChains, o.Name) },
		func(ch *Chain) { c.AddChains = append(c.AddChains, *ch) },
		func(o, ch *Chain) bool {
			if !c.chain(*o, *ch) {
				reason = "base chain " + ch.Name + " changed"
				return false
			}
			return true
		}, check) {
		return c, false
	}
	if reason != "" { // the walks stopped there: the reason is the first in name order if the rest is sorted too
		return Changes{Full: true, Reason: reason}, !check || sortedNames(old.Sets, setName) &&
			sortedNames(new.Sets, setName) && sortedNames(old.Chains, chainName) && sortedNames(new.Chains, chainName)
	}
	sorted := walk(old.Counters, new.Counters, func(c *Counter) string { return c.Name },
		func(o *Counter) { c.DelCounters = append(c.DelCounters, o.Name) },
		func(n *Counter) { c.AddCounters = append(c.AddCounters, n.Name) },
		func(*Counter, *Counter) bool { return true }, check)
	return c, sorted
}

// walk visits two lists sorted by name in step: gone gets what only old
// holds, added what only new holds, and both the pairs of one name, until
// it returns false. Items are passed by pointer: a counter or a set is
// not copied at each step.
// Equal names are tested first: a Compiler's rulesets share their names'
// memory, which makes that test cheap, and most names are in both.
//
// With check, walk checks that both lists are sorted by name without
// repeats as it goes, and returns false (what it visited then being
// meaningless) when one is not. Old's order is checked at every item;
// new's only where new's item is taken alone: where both hold a name,
// new's order follows from old's (every item new gave before was a name
// old gave before, or was taken alone as less than old's item then, at
// most the current one). A check of its own over each list cost twice
// the comparisons.
//
// One list given twice (a Compiler's rulesets share what did not change)
// is not walked: nothing comes or goes, and both finds nothing to record
// when given an item and itself (sets and chains keep their definition
// and content).
func walk[T any](old, new []T, name func(*T) string, gone, added func(*T), both func(o, n *T) bool, check bool) bool {
	if sameList(old, new) {
		return true
	}
	var lastOld, lastNew *T
	for len(old) > 0 || len(new) > 0 {
		var o, n *T
		if len(old) > 0 {
			o = &old[0]
		}
		if len(new) > 0 {
			n = &new[0]
		}
		switch {
		case o != nil && n != nil && name(o) == name(n):
			if check && lastOld != nil && name(lastOld) >= name(o) {
				return false
			}
			lastOld, lastNew, old, new = o, n, old[1:], new[1:]
			if !both(o, n) {
				return true
			}
		case n == nil || o != nil && name(o) < name(n):
			if check && lastOld != nil && name(lastOld) >= name(o) {
				return false
			}
			lastOld, old = o, old[1:]
			gone(o)
		default:
			if check && lastNew != nil && name(lastNew) >= name(n) {
				return false
			}
			lastNew, new = n, new[1:]
			added(n)
		}
	}
	return true
}

// sortedNames tells whether list is sorted by name without repeats.
func sortedNames[T any](list []T, name func(*T) string) bool {
	for i := 1; i < len(list); i++ {
		if name(&list[i-1]) >= name(&list[i]) {
			return false
		}
	}
	return true
}

func setName(s *Set) string { return s.Name }

func chainName(c *Chain) string { return c.Name }

// sameList tells whether a and b are one list: the same memory and
// length.
func sameList[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// elems records the element changes of a set that stays; a Dynamic
// set's elements are the data plane's.
func (c *Changes) elems(o, s Set) {
	if s.Dynamic || sameElems(o.Elems, s.Elems) {
		return
	}
	del, add := elemDiff(o.Elems, s.Elems)
	if len(del) > 0 {
		c.DelElems = append(c.DelElems, SetElems{Set: s.Name, Elems: del})
	}
	if len(add) > 0 {
		c.AddElems = append(c.AddElems, SetElems{Set: s.Name, Elems: add})
	}
}

// chain records the change of a chain that stays; false when it cannot
// be changed in place (its base changed).
func (c *Changes) chain(o, ch Chain) bool {
	switch {
	case !samePointee(o.Base, ch.Base): // reflect.DeepEqual costs a tenth of a µs a chain
		return false
	case !sameRules(o.Rules, ch.Rules):
		c.ReplaceChains = append(c.ReplaceChains, ch)
	}
	return true
}

// byName returns r with its sets, chains and counters sorted by name, as
// Compile makes them; r itself is not modified.
func byName(r Ruleset) Ruleset {
	r.Sets = slices.Clone(r.Sets)
	r.Chains = slices.Clone(r.Chains)
	r.Counters = slices.Clone(r.Counters)
	slices.SortStableFunc(r.Counters, compareCounters)
	slices.SortStableFunc(r.Sets, func(a, b Set) int { return strings.Compare(a.Name, b.Name) })
	slices.SortStableFunc(r.Chains, func(a, b Chain) int { return strings.Compare(a.Name, b.Name) })
	return r
}

func compareCounters(a, b Counter) int { return strings.Compare(a.Name, b.Name) }

func sameSetDef(a, b Set) bool {
	return a.Interval == b.Interval && a.Map == b.Map && a.Comment == b.Comment && slices.Equal(a.Key, b.Key) &&
		a.Timeout == b.Timeout && a.Size == b.Size && a.Dynamic == b.Dynamic
}

func sameRules(a, b []Rule) bool {
	if sameList(a, b) {
		return true // shared: a Compiler reuses what did not change
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameRule(a[i], b[i]) {
			return false
		}
	}
	return true
}

// sameRule is reflect.DeepEqual(a, b) for rules, a tenth of its cost: the
// chains a Compiler rebuilds on every call (base and selection chains)
// are compared whole on every Diff. TestSameRuleSeesEveryField keeps it
// in step with the fields of Rule.
func sameRule(a, b Rule) bool {
	return a.Counter == b.Counter && a.Owner == b.Owner && sameVerdict(a.Verdict, b.Verdict) &&
		samePointee(a.Log, b.Log) && samePointee(a.Mark, b.Mark) && samePointee(a.TProxy, b.TProxy) &&
		slices.EqualFunc(a.Matches, b.Matches, sameMatch)
}

// sameMatch is reflect.DeepEqual for matches.
func sameMatch(a, b Match) bool {
	return a.Kind == b.Kind && a.CtStates == b.CtStates && a.Set == b.Set && a.Negate == b.Negate && a.ID == b.ID &&
		a.Proto == b.Proto && a.PortFrom == b.PortFrom && a.PortTo == b.PortTo && a.AllPorts == b.AllPorts &&
		a.IfPrefix == b.IfPrefix && a.Mark == b.Mark && slices.Equal(a.Fields, b.Fields)
}

// samePointee tells whether a and b are both nil or point to equal values.
func samePointee[T comparable](a, b *T) bool {
	return a == b || a != nil && b != nil && *a == *b
}

// sameElems is the fast path of Diff: most sets do not change.
func sameElems(a, b []Elem) bool {
	if sameList(a, b) {
		return true // shared: a Compiler reuses what did not change
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i].Key) != len(b[i].Key) || !sameElemVerdict(a[i], b[i]) {
			return false
		}
		for j := range a[i].Key {
			if a[i].Key[j] != b[i].Key[j] {
				return false
			}
		}
	}
	return true
}

// elemDiff compares two element lists (sorted and without repeated keys,
// as a Ruleset holds them; others are sorted first). An element whose key
// stays but whose verdict changes is deleted and added again.
func elemDiff(old, new []Elem) (del, add []Elem) {
	old, new = trimShared(old, new)
	if del, add, sorted := mergeElems(old, new); sorted {
		return del, add
	}
	if !slices.IsSortedFunc(old, compareElems) {
		old = SortElems(slices.Clone(old))
	}
	if !slices.IsSortedFunc(new, compareElems) {
		new = SortElems(slices.Clone(new))
	}
	del, add, _ = mergeElems(old, new)
	return del, add
}

// mergeElems walks two sorted element lists in step: del holds what only
// old holds, add what only new holds, and both an element whose verdict
// changed. It checks the order of each list as it goes, instead of a pass
// of its own over each: false, and del and add meaningless, when one is
// not sorted. A pair of one key memory (a Compiler's shared elements) is
// not compared by content, and new's order is checked only where new's
// element is taken alone: where old's is taken too, new's follows from
// old's (every element new gave before came while old's head, at most
// the current one, was at least that element).
func mergeElems(old, new []Elem) (del, add []Elem, sorted bool) {
	var lastOld, lastNew *Elem
	for len(old) > 0 && len(new) > 0 {
		o, n := &old[0], &new[0]
		if sameElem(*o, *n) {
			if !after(lastOld, o) {
				return nil, nil, false
			}
			lastOld, lastNew = o, n
			old, new = old[1:], new[1:]
			continue
		}
		c := compareElems(*o, *n)
		if c <= 0 && !after(lastOld, o) || c > 0 && !after(lastNew, n) {
			return nil, nil, false
		}
		switch {
		case c < 0:
			del, lastOld, old = append(del, *o), o, old[1:]
		case c > 0:
			add, lastNew, new = append(add, *n), n, new[1:]
		default:
			if !sameElemVerdict(*o, *n) {
				del, add = append(del, *o), append(add, *n)
			}
			lastOld, lastNew, old, new = o, n, old[1:], new[1:]
		}
	}
	if !sortedAfter(lastOld, old) || !sortedAfter(lastNew, new) {
		return nil, nil, false
	}
	return append(del, old...), append(add, new...), true
}

// after tells whether e may follow last (nil: e is first) in a sorted
// list.
func after(last, e *Elem) bool { return last == nil || compareElems(*last, *e) <= 0 }

// sortedAfter tells whether es is sorted and may follow last.
func sortedAfter(last *Elem, es []Elem) bool {
	for i := range es {
		if !after(last, &es[i]) {
			return false
		}
		last = &es[i]
	}
	return true
}

// trimShared drops the common head and tail of two element lists where
// they are the same elements: the same key memory and verdict, as a
// Compiler's rulesets share what did not change (a shared set is the
// concatenation of its groups; a change touches one). Without repeated
// keys an element in both lists is neither deleted nor added, whatever
// the order, so dropping it changes nothing; the rest is compared by
// content.
func trimShared(old, new []Elem) ([]Elem, []Elem) {
	for len(old) > 0 && len(new) > 0 && sameElem(old[0], new[0]) {
		old, new = old[1:], new[1:]
	}
	for len(old) > 0 && len(new) > 0 && sameElem(old[len(old)-1], new[len(new)-1]) {
		old, new = old[:len(old)-1], new[:len(new)-1]
	}
	return old, new
}

// sameElem tells whether a and b are the same element: the same key
// memory and an equal verdict.
func sameElem(a, b Elem) bool {
	return len(a.Key) > 0 && sameList(a.Key, b.Key) && sameElemVerdict(a, b)
}

// sameElemVerdict tells whether a and b have equal map verdicts.
func sameElemVerdict(a, b Elem) bool {
	return a.Verdict == b.Verdict || sameVerdict(a.MapVerdict(), b.MapVerdict())
}

func sameVerdict(a, b Verdict) bool {
	return a.Kind == b.Kind && a.Chain == b.Chain && a.Map == b.Map && slices.Equal(a.Fields, b.Fields)
}
