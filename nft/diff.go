package nft

import (
	"fmt"
	"reflect"
	"sort"
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
}

// SetElems is a batch of elements of one set.
type SetElems struct {
	Set   string
	Elems []Elem
}

// Empty reports whether nothing changes.
func (c Changes) Empty() bool {
	return !c.Full && len(c.AddSets)+len(c.DelElems)+len(c.AddElems)+len(c.AddChains)+
		len(c.ReplaceChains)+len(c.DelChains)+len(c.DelSets) == 0
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
	return fmt.Sprintf("+%d sets -%d sets, +%d -%d elements, +%d chains ~%d chains -%d chains",
		len(c.AddSets), len(c.DelSets), count(c.AddElems), count(c.DelElems),
		len(c.AddChains), len(c.ReplaceChains), len(c.DelChains))
}

// Diff computes the changes from old to new. It is pure and sorted.
func Diff(old, new Ruleset) Changes {
	var c Changes
	oldSets := map[string]Set{}
	for _, s := range old.Sets {
		oldSets[s.Name] = s
	}
	newSets := map[string]bool{}
	for _, s := range new.Sets {
		newSets[s.Name] = true
		o, ok := oldSets[s.Name]
		if !ok {
			c.AddSets = append(c.AddSets, s)
			continue
		}
		if !sameSetDef(o, s) {
			return Changes{Full: true, Reason: "set " + s.Name + " changed definition"}
		}
		if sameElems(o.Elems, s.Elems) {
			continue
		}
		del, add := elemDiff(o.Elems, s.Elems)
		if len(del) > 0 {
			c.DelElems = append(c.DelElems, SetElems{Set: s.Name, Elems: del})
		}
		if len(add) > 0 {
			c.AddElems = append(c.AddElems, SetElems{Set: s.Name, Elems: add})
		}
	}
	for _, s := range old.Sets {
		if !newSets[s.Name] {
			c.DelSets = append(c.DelSets, s.Name)
		}
	}
	oldChains := map[string]Chain{}
	for _, ch := range old.Chains {
		oldChains[ch.Name] = ch
	}
	newChains := map[string]bool{}
	for _, ch := range new.Chains {
		newChains[ch.Name] = true
		o, ok := oldChains[ch.Name]
		switch {
		case !ok:
			c.AddChains = append(c.AddChains, ch)
		case !reflect.DeepEqual(o.Base, ch.Base):
			return Changes{Full: true, Reason: "base chain " + ch.Name + " changed"}
		case !sameRules(o.Rules, ch.Rules):
			c.ReplaceChains = append(c.ReplaceChains, ch)
		}
	}
	for _, ch := range old.Chains {
		if !newChains[ch.Name] {
			c.DelChains = append(c.DelChains, ch.Name)
		}
	}
	sort.Strings(c.DelChains)
	sort.Strings(c.DelSets)
	return c
}

func sameSetDef(a, b Set) bool {
	return a.Interval == b.Interval && a.Map == b.Map && a.Comment == b.Comment && reflect.DeepEqual(a.Key, b.Key)
}

func sameRules(a, b []Rule) bool {
	return reflect.DeepEqual(a, b)
}

// sameElems is the fast path of Diff: most sets do not change.
func sameElems(a, b []Elem) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i].Key) != len(b[i].Key) || a[i].Verdict.Kind != b[i].Verdict.Kind || a[i].Verdict.Chain != b[i].Verdict.Chain {
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

// elemDiff compares two sorted element lists. An element whose key stays but
// whose verdict changes is deleted and added again.
func elemDiff(old, new []Elem) (del, add []Elem) {
	oldBy := make(map[string]Elem, len(old))
	for _, e := range old {
		oldBy[e.id()] = e
	}
	newBy := make(map[string]Elem, len(new))
	for _, e := range new {
		newBy[e.id()] = e
		o, ok := oldBy[e.id()]
		if !ok {
			add = append(add, e)
			continue
		}
		if o.Verdict.String() != e.Verdict.String() {
			del = append(del, o)
			add = append(add, e)
		}
	}
	for _, e := range old {
		if _, ok := newBy[e.id()]; !ok {
			del = append(del, e)
		}
	}
	return sortElems(del), sortElems(add)
}
