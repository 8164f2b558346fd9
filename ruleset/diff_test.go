package ruleset

import (
	"fmt"
	"slices"
	"testing"
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
			e.Verdict = Verdict{Kind: VerdictJump, Chain: chain}
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
	new[1].Verdict = Verdict{Kind: VerdictJump, Chain: "b"} // same key memory
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
