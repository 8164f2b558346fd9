package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
)

// peerSnapshot has two namespaces of pods labelled role: db or web, and a
// policy in a whose ingress allows the db pods of both namespaces: a peer
// group listed from two cached results.
func peerSnapshot(t *testing.T) Snapshot {
	s := Snapshot{Node: Node{Name: "n1"}, Namespaces: []Namespace{
		{Name: "a", Labels: map[string]string{"team": "x"}}, {Name: "b", Labels: map[string]string{"team": "x"}},
	}}
	s.Pods = append(s.Pods, Pod{Namespace: "a", Name: "local", Node: "n1", IPs: []netip.Addr{netip.MustParseAddr("10.0.9.1")}})
	for i := range 12 {
		role := []string{"db", "web"}[i%2]
		ips := []netip.Addr{netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", i%3, 50-i)), netip.MustParseAddr(fmt.Sprintf("fd00::%d", 50-i))}
		s.Pods = append(s.Pods, Pod{Namespace: []string{"a", "b"}[i%3%2], Name: fmt.Sprint("p", i), Node: "n2",
			Labels: map[string]string{"role": role}, IPs: ips})
	}
	s.Policies = append(s.Policies, fixtures.Policy(t, `{metadata: {namespace: a, name: from-db}, spec: {podSelector: {},
		ingress: [{from: [{namespaceSelector: {matchLabels: {team: x}}, podSelector: {matchLabels: {role: db}}}]}]}}`))
	return s
}

// peerChanges are changes of peerSnapshot's pods: pods joining and
// leaving the peer group, changing their addresses as members, sharing an
// address, going and coming, in turn.
var peerChanges = []struct {
	name   string
	change func(pods []Pod) []Pod
}{
	{"join", func(pods []Pod) []Pod {
		pods[2].Labels = map[string]string{"role": "db"}
		return pods
	}},
	{"leave", func(pods []Pod) []Pod {
		pods[1].Labels = map[string]string{"role": "web"}
		return pods
	}},
	{"new address", func(pods []Pod) []Pod {
		pods[3].IPs = []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::ffff:10.0.0.2")}
		return pods
	}},
	{"shared address", func(pods []Pod) []Pod {
		pods[5].IPs = pods[3].IPs
		return pods
	}},
	{"one of two goes", func(pods []Pod) []Pod { return slices.Delete(pods, 3, 4) }},
	{"new pod", func(pods []Pod) []Pod {
		return append(pods, Pod{Namespace: "b", Name: "q", Node: "n3", Labels: map[string]string{"role": "db"},
			IPs: []netip.Addr{netip.MustParseAddr("fd00::7")}})
	}},
}

// TestMemberAddrsFollowPods runs a Compiler through pods joining and
// leaving a peer group, changing their addresses as members, sharing an
// address, and going: each cached result's sorted addresses, kept up to
// date as pods change, must be its members' addresses sorted, and every
// result Compile's.
func TestMemberAddrsFollowPods(t *testing.T) {
	s := peerSnapshot(t)
	x := NewCompiler()
	step := func(at string, change func(pods []Pod) []Pod) {
		t.Helper()
		s.Pods = change(slices.Clone(s.Pods))
		got, want := x.Compile(s), Compile(s)
		if got.String() != want.String() {
			t.Fatalf("%s: Compiler differs from Compile:\n%s", at, textdiff.Lines(want.String(), got.String()))
		}
		listed := 0
		for id, e := range x.entries {
			if e.sorted == nil {
				continue
			}
			listed++
			fresh := (&podEntry{list: e.list}).addrs()
			if !slices.Equal(e.sorted.v4, fresh.v4) || !slices.Equal(e.sorted.v6, fresh.v6) {
				t.Errorf("%s: addresses of %v: %v %v, its members have %v %v", at, id, e.sorted.v4, e.sorted.v6, fresh.v4, fresh.v6)
			}
		}
		if listed == 0 {
			t.Fatalf("%s: no cached result listed its addresses", at)
		}
	}
	step("first", func(pods []Pod) []Pod { return pods })
	for _, c := range peerChanges {
		step(c.name, c.change)
	}
}

// TestRelistKeepsElements: listing a peer group again after a pod joined
// it keeps the elements of the addresses it had (their keys' memory) and
// makes keys for the new pod's only.
func TestRelistKeepsElements(t *testing.T) {
	s := peerSnapshot(t)
	x := NewCompiler()
	before := x.Compile(s)
	s.Pods = slices.Clone(s.Pods)
	s.Pods[2].Labels = map[string]string{"role": "db"}
	after := x.Compile(s)
	if want := Compile(s); after.String() != want.String() {
		t.Fatalf("Compiler differs from Compile:\n%s", textdiff.Lines(want.String(), after.String()))
	}
	peers := func(r ruleset.Ruleset) []ruleset.Elem { // of every shard of peers4
		var out []ruleset.Elem
		for _, set := range r.Sets {
			if slices.Equal(set.Key, []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv4}) {
				out = append(out, set.Elems...)
			}
		}
		return out
	}
	old := peers(before)
	kept, made := 0, 0
	for _, e := range peers(after) {
		i := slices.IndexFunc(old, func(o ruleset.Elem) bool { return slices.Equal(o.Key, e.Key) })
		switch {
		case i < 0:
			made++
		case &old[i].Key[0] == &e.Key[0]:
			kept++
		default:
			t.Errorf("element %q listed again with new keys", e.Key[1].From)
		}
	}
	if kept == 0 || made != 1 {
		t.Errorf("%d elements kept, %d made; want some kept, 1 made (the pod that joined)", kept, made)
	}
}

// TestPatchedElems runs a Compiler through pods joining and leaving a
// peer group, changing addresses, sharing one and going; after each
// Compile, patching the group's previous elements with the pods changed
// must work and give the elements a full listing gives.
func TestPatchedElems(t *testing.T) {
	s := peerSnapshot(t)
	x := NewCompiler()
	x.Compile(s)
	ps := x.policies[podID{"a", "from-db"}]
	step := func(at string, change func(pods []Pod) []Pod) {
		t.Helper()
		before := slices.Clone(ps.out.groups)
		s.Pods = change(slices.Clone(s.Pods))
		if got, want := x.Compile(s), Compile(s); got.String() != want.String() {
			t.Fatalf("%s: Compiler differs from Compile:\n%s", at, textdiff.Lines(want.String(), got.String()))
		}
		patched := 0
		for _, g := range before {
			if g.from == nil {
				continue
			}
			elems, ok := x.patchedElems(g.id, g.base, g.from, g.vers, g.elems)
			if !ok {
				t.Errorf("%s: group %s %q not patched", at, g.set, g.def)
				continue
			}
			patched++
			if want := relistedElems(g.id, g.base, g.from, nil); !slices.EqualFunc(elems, want, sameKey) {
				t.Errorf("%s: group %s %q patched to %v, listed %v", at, g.set, g.def, elems, want)
			}
		}
		if patched == 0 {
			t.Fatalf("%s: no group to patch", at)
		}
	}
	for _, c := range peerChanges {
		step(c.name, c.change)
	}
}
