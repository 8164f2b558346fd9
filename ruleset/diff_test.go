package ruleset

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// TestElemDiffSharedMemory pins elemDiff when two lists share element
// memory, as a Compiler's rulesets do: the shared head and tail are
// dropped without changing the result, a shared element met elsewhere is
// still found by content, and a verdict change of a shared key is a
// delete and an add.
func TestElemDiffSharedMemory(t *testing.T) {
	elem := func(i int, chain string) Elem {
		k := fmt.Sprintf("\x0a\x00\x00%c", byte(i))
		e := Elem{Key: []Range{{k, k}}}
		if chain != "" {
			e.Verdict = &Verdict{Kind: VerdictJump, Chain: chain}
		}
		return e
	}
	base := []Elem{elem(1, ""), elem(2, ""), elem(3, ""), elem(4, ""), elem(5, "")}
	for _, c := range []struct {
		name          string
		new           []Elem
		wantDel, want []int
	}{
		{"one added in the middle", []Elem{base[0], base[1], elem(6, ""), base[2], base[3], base[4]}, nil, []int{6}},
		{"one gone in the middle", []Elem{base[0], base[1], base[3], base[4]}, []int{3}, nil},
		{"equal copies, not shared", []Elem{elem(1, ""), elem(2, ""), elem(3, ""), elem(4, ""), elem(5, "")}, nil, nil},
		{"shared, out of order", []Elem{base[4], base[1], base[2], base[3], base[0]}, nil, nil},
		{"head replaced", []Elem{elem(7, ""), base[1], base[2], base[3], base[4]}, []int{1}, []int{7}},
	} {
		del, add := elemDiff(base, c.new)
		if got, want := keys(del), c.wantDel; !slices.Equal(got, want) {
			t.Errorf("%s: deleted %v, want %v", c.name, got, want)
		}
		if got, want := keys(add), c.want; !slices.Equal(got, want) {
			t.Errorf("%s: added %v, want %v", c.name, got, want)
		}
	}
	// The shared head and tail are dropped before the content walk: one
	// inserted element leaves it just that element to compare.
	if o, n := trimShared(base, []Elem{base[0], base[1], elem(6, ""), base[2], base[3], base[4]}); len(o) != 0 || !slices.Equal(keys(n), []int{6}) {
		t.Errorf("trimShared around an insert left %v and %v, want nothing and [6]", keys(o), keys(n))
	}
	if o, n := trimShared(base, slices.Clone(base)); len(o) != 0 || len(n) != 0 {
		t.Errorf("trimShared of one list and its shared copy left %v and %v", keys(o), keys(n))
	}
	if o, _ := trimShared(base, []Elem{elem(1, ""), elem(2, ""), elem(3, ""), elem(4, ""), elem(5, "")}); len(o) != len(base) {
		t.Errorf("trimShared dropped equal elements of other memory: %v left", keys(o))
	}
	old := []Elem{elem(1, "a"), elem(2, "a")}
	new := slices.Clone(old)
	new[1].Verdict = &Verdict{Kind: VerdictJump, Chain: "b"} // same key memory
	if del, add := elemDiff(old, new); !slices.Equal(keys(del), []int{2}) || !slices.Equal(keys(add), []int{2}) || add[0].Verdict.Chain != "b" {
		t.Errorf("verdict change of a shared key: deleted %v, added %v", del, add)
	}
}

// keys are the last key bytes of elems, for messages.
func keys(elems []Elem) []int {
	var out []int
	for _, e := range elems {
		k := e.Key[0].From
		out = append(out, int(k[len(k)-1]))
	}
	return out
}

// TestSameRuleSeesEveryField keeps sameRule in step with Rule: a rule
// with every field set equals its deep copy, and differs from each copy
// with one field (at any depth: matches, verdict, owner, log, mark,
// tproxy) changed, a slice grown or a pointer cleared. A field added to
// Rule or to what it holds fails here until sameRule compares it.
func TestSameRuleSeesEveryField(t *testing.T) {
	base := Rule{
		Matches: []Match{{Kind: MatchLookup, CtStates: 1, Fields: []Field{FieldIPSaddr}, Set: "s", Negate: true, ID: 2,
			Proto: 6, PortFrom: 80, PortTo: 81, AllPorts: true, IfPrefix: "weir", Mark: 4}},
		Counter: "c",
		Log:     &Log{Prefix: "p", Group: 1, Rate: 2},
		Mark:    &MarkSet{Mask: 1, Value: 1},
		TProxy:  &TProxy{IPv6: true, Port: 3},
		Verdict: Verdict{Kind: VerdictVMap, Chain: "x", Map: "m", Fields: []Field{FieldIPDaddr}},
		Owner: Owner{Kind: OwnerPolicyRule, Tier: TierAdmin, Namespace: "ns", Policy: "p", Direction: Ingress,
			Rule: 1, RuleName: "r", Action: "Accept"},
	}
	copyRule := func() Rule {
		var r Rule
		b, err := json.Marshal(base)
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if !sameRule(base, copyRule()) {
		t.Fatal("a rule differs from its deep copy")
	}
	n := 0
	var visit func(path string, v reflect.Value)
	visit = func(path string, v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				visit(path+"."+v.Type().Field(i).Name, v.Field(i))
			}
			return
		case reflect.Pointer:
			visit(path+"*", v.Elem())
		case reflect.Slice:
			if v.Len() > 0 {
				visit(path+"[0]", v.Index(0))
			}
		}
		n++
		r := copyRule()
		leaf := lookupPath(reflect.ValueOf(&r).Elem(), path)
		switch leaf.Kind() {
		case reflect.String:
			leaf.SetString(leaf.String() + "x")
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			leaf.SetInt(leaf.Int() + 1)
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			leaf.SetUint(leaf.Uint() + 1)
		case reflect.Bool:
			leaf.SetBool(!leaf.Bool())
		case reflect.Slice:
			leaf.Set(reflect.Append(leaf, reflect.Zero(leaf.Type().Elem())))
		case reflect.Pointer:
			leaf.Set(reflect.Zero(leaf.Type()))
		default:
			t.Fatalf("%s: kind %s not handled", path, leaf.Kind())
		}
		if sameRule(base, r) {
			t.Errorf("sameRule misses a change of %s", path)
		}
	}
	visit("", reflect.ValueOf(base))
	if n < 30 {
		t.Errorf("visited %d fields, want every field of Rule", n)
	}
}

// lookupPath finds the field at path (as TestSameRuleSeesEveryField
// writes it: .Name, * and [0] steps) in v.
func lookupPath(v reflect.Value, path string) reflect.Value {
	for path != "" {
		switch {
		case strings.HasPrefix(path, "*"):
			v, path = v.Elem(), path[1:]
		case strings.HasPrefix(path, "[0]"):
			v, path = v.Index(0), path[3:]
		default:
			name := path[1:]
			if i := strings.IndexAny(name, ".*["); i >= 0 {
				name = name[:i]
			}
			v, path = v.FieldByName(name), path[1+len(name):]
		}
	}
	return v
}

// TestElemDiffMatchesSets checks elemDiff against set arithmetic on random
// lists: sorted or shuffled, sharing key memory or not (a shuffled list
// must be found out however its shared runs fall), some verdicts changed.
func TestElemDiffMatchesSets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	elem := func(k int, chain string) Elem {
		key := fmt.Sprintf("\x0a\x00%c%c", byte(k>>8), byte(k))
		return Elem{Key: []Range{{key, key}}, Verdict: &Verdict{Kind: VerdictJump, Chain: chain}}
	}
	pool := make([]Elem, 64)
	for i := range pool {
		pool[i] = elem(i, "a")
	}
	pick := func() []Elem {
		var out []Elem
		for i, e := range pool {
			switch r := rng.IntN(8); {
			case r < 3: // absent
			case r == 3:
				out = append(out, elem(i, "a")) // equal, other memory
			case r == 4:
				out = append(out, elem(i, "b")) // another verdict
			default:
				out = append(out, e) // shared
			}
		}
		if rng.IntN(4) == 0 {
			i, j := rng.IntN(len(out)+1), rng.IntN(len(out)+1)
			if i > j {
				i, j = j, i
			}
			rng.Shuffle(j-i, func(a, b int) { out[i+a], out[i+b] = out[i+b], out[i+a] })
		}
		return out
	}
	index := func(es []Elem) map[string]string {
		m := map[string]string{}
		for _, e := range es {
			m[e.Key[0].From] = e.Verdict.Chain
		}
		return m
	}
	names := func(es []Elem) []string {
		var out []string
		for _, e := range es {
			out = append(out, fmt.Sprintf("%x:%s", e.Key[0].From, e.Verdict.Chain))
		}
		slices.Sort(out)
		return out
	}
	for round := range 2000 {
		old, new := pick(), pick()
		mo, mn := index(old), index(new)
		var wantDel, wantAdd []Elem
		for _, e := range old {
			if v, ok := mn[e.Key[0].From]; !ok || v != e.Verdict.Chain {
				wantDel = append(wantDel, e)
			}
		}
		for _, e := range new {
			if v, ok := mo[e.Key[0].From]; !ok || v != e.Verdict.Chain {
				wantAdd = append(wantAdd, e)
			}
		}
		del, add := elemDiff(old, new)
		if got, want := names(del), names(wantDel); !slices.Equal(got, want) {
			t.Fatalf("round %d: deleted %v, want %v", round, got, want)
		}
		if got, want := names(add), names(wantAdd); !slices.Equal(got, want) {
			t.Fatalf("round %d: added %v, want %v", round, got, want)
		}
	}
}

// TestDiffOfAnyOrder checks Diff, which sorts the lists only when they
// are out of order and does not look into a list both rulesets share,
// against a diff by name lookup: sorted, shuffled and with a neighbour
// swapped, sets, chains and counters come and go, change rules, elements
// or (a set, a base chain) their definition; a ruleset and itself differ
// in nothing, whatever its order.
func TestDiffOfAnyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	key := func(i int) []Range { k := string([]byte{10, 0, 0, byte(i)}); return []Range{{k, k}} }
	pick := func() Ruleset {
		var r Ruleset
		for i := range 12 {
			name := fmt.Sprintf("n%02d", i)
			if rng.IntN(3) == 0 {
				continue
			}
			s := Set{Name: name, Key: []Type{TypeIPv4}, Elems: []Elem{{Key: key(rng.IntN(3))}}}
			if rng.IntN(20) == 0 {
				s.Interval = true
			}
			r.Sets = append(r.Sets, s)
			ch := Chain{Name: name, Rules: []Rule{{Verdict: Verdict{Kind: VerdictKind(1 + rng.IntN(2))}}}}
			if i == 0 {
				ch.Base = &Base{Type: "filter", Hook: HookInput, Priority: rng.IntN(20) / 19}
			}
			r.Chains = append(r.Chains, ch)
			r.Counters = append(r.Counters, Counter{Name: name})
		}
		disorder := func(n int, swap func(i, j int)) {
			switch rng.IntN(4) {
			case 0:
				rng.Shuffle(n, swap)
			case 1:
				if n > 1 {
					i := rng.IntN(n - 1)
					swap(i, i+1)
				}
			}
		}
		disorder(len(r.Sets), func(i, j int) { r.Sets[i], r.Sets[j] = r.Sets[j], r.Sets[i] })
		disorder(len(r.Chains), func(i, j int) { r.Chains[i], r.Chains[j] = r.Chains[j], r.Chains[i] })
		disorder(len(r.Counters), func(i, j int) { r.Counters[i], r.Counters[j] = r.Counters[j], r.Counters[i] })
		return r
	}
	for round := range 5000 {
		old, new := pick(), pick()
		got, want := Diff(old, new), diffByLookup(old, new)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: Diff\n%+v\nwant\n%+v\nold %+v\nnew %+v", round, got, want, old, new)
		}
		if got := Diff(old, old); !reflect.DeepEqual(got, Changes{}) {
			t.Fatalf("round %d: Diff of a ruleset and itself: %+v", round, got)
		}
	}
}

// diffByLookup is Diff by name lookup, for rulesets without repeated
// names.
func diffByLookup(old, new Ruleset) Changes {
	old, new = byName(old), byName(new)
	var c Changes
	sets, chains, counters := map[string]Set{}, map[string]Chain{}, map[string]bool{}
	for _, s := range new.Sets {
		sets[s.Name] = s
	}
	for _, ch := range new.Chains {
		chains[ch.Name] = ch
	}
	for _, n := range new.Counters {
		counters[n.Name] = true
	}
	for _, o := range old.Sets {
		s, ok := sets[o.Name]
		switch {
		case !ok:
			c.DelSets = append(c.DelSets, o.Name)
		case !reflect.DeepEqual(o.Key, s.Key) || o.Interval != s.Interval:
			return Changes{Full: true, Reason: "set " + s.Name + " changed definition"}
		case !reflect.DeepEqual(o.Elems, s.Elems):
			c.DelElems = append(c.DelElems, SetElems{Set: s.Name, Elems: o.Elems})
			c.AddElems = append(c.AddElems, SetElems{Set: s.Name, Elems: s.Elems})
		}
		delete(sets, o.Name)
	}
	for _, s := range new.Sets {
		if _, ok := sets[s.Name]; ok {
			c.AddSets = append(c.AddSets, s)
		}
	}
	for _, o := range old.Chains {
		ch, ok := chains[o.Name]
		switch {
		case !ok:
			c.DelChains = append(c.DelChains, o.Name)
		case !reflect.DeepEqual(o.Base, ch.Base):
			return Changes{Full: true, Reason: "base chain " + ch.Name + " changed"}
		case !reflect.DeepEqual(o.Rules, ch.Rules):
			c.ReplaceChains = append(c.ReplaceChains, ch)
		}
		delete(chains, o.Name)
	}
	for _, ch := range new.Chains {
		if _, ok := chains[ch.Name]; ok {
			c.AddChains = append(c.AddChains, ch)
		}
	}
	for _, o := range old.Counters {
		if !counters[o.Name] {
			c.DelCounters = append(c.DelCounters, o.Name)
		}
		delete(counters, o.Name)
	}
	for _, n := range new.Counters {
		if counters[n.Name] {
			c.AddCounters = append(c.AddCounters, n.Name)
		}
	}
	return c
}

// TestElemIsSmall: a set element holds its map verdict by pointer, as the
// shared sets hold tens of thousands of elements that have none (88 bytes
// an element with the verdict inline).
func TestElemIsSmall(t *testing.T) {
	if n := unsafe.Sizeof(Elem{}); n > 32 {
		t.Errorf("Elem is %d bytes, want at most 32", n)
	}
	if v := (Elem{}).MapVerdict(); v.Kind != VerdictNone {
		t.Errorf("MapVerdict of an element without one = %v, want none", v)
	}
}
