package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
)

// selectionSnapshot has a pod one policy selects (web), a pod two select
// (api), both for ingress, and denied packets logged as log says.
func selectionSnapshot(t *testing.T, log DeniedLog) Snapshot {
	t.Helper()
	pod := func(name, ip string, labels map[string]string) Pod {
		return Pod{Namespace: "default", Name: name, Node: "n1", Labels: labels, IPs: []netip.Addr{netip.MustParseAddr(ip)}}
	}
	return Snapshot{
		Node: Node{Name: "n1"}, LogDenied: log, Namespaces: []Namespace{{Name: "default"}},
		Pods: []Pod{pod("web", "10.0.1.10", map[string]string{"app": "web"}), pod("api", "10.0.1.11", map[string]string{"app": "api", "tier": "back"})},
		Policies: fixtures.Policies(t, `
{metadata: {name: web-80, namespace: default}, spec: {podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 80}]}]}}
---
{metadata: {name: api-80, namespace: default}, spec: {podSelector: {matchLabels: {app: api}}, ingress: [{ports: [{port: 80}]}]}}
---
{metadata: {name: back-81, namespace: default}, spec: {podSelector: {matchLabels: {tier: back}}, ingress: [{ports: [{port: 81}]}]}}
`),
	}
}

// TestSelectionChainsOnlyWhereNeeded pins the dispatch of isolated pods: a
// pod one policy selects jumps straight to that policy's chain, a pod two
// select to a selection chain of two jumps, no selection chain drops (the
// base chain does, once), and with denied packets logged every pod has a
// selection chain, ending in its log rule.
func TestSelectionChainsOnlyWhereNeeded(t *testing.T) {
	for _, tc := range []struct {
		name       string
		log        DeniedLog
		web        string // the chain web's element jumps to, by prefix
		selections int
		rules      int // in the selection chains
	}{
		{"not logged", DeniedLog{}, "pol-in-", 1, 2},
		{"logged", DeniedLog{Group: 5}, "sel-in-", 2, 2 + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Compile(selectionSnapshot(t, tc.log))
			m, _ := r.Set(mapIngress4)
			jumps := map[string]string{}
			for _, e := range m.Elems {
				jumps[string(e.Key[0].From)] = e.Verdict.Chain
			}
			if web := jumps[string(netip.MustParseAddr("10.0.1.10").AsSlice())]; !strings.HasPrefix(web, tc.web) {
				t.Errorf("web jumps to %q, want a chain %s*", web, tc.web)
			}
			if api := jumps[string(netip.MustParseAddr("10.0.1.11").AsSlice())]; !strings.HasPrefix(api, prefixSelection) {
				t.Errorf("api jumps to %q, want its selection chain", api)
			}
			selections, rules := 0, 0
			for _, c := range r.Chains {
				if !strings.HasPrefix(c.Name, prefixSelection) {
					continue
				}
				selections++
				rules += len(c.Rules)
				for _, rl := range c.Rules {
					if rl.Verdict.Kind == ruleset.VerdictDrop {
						t.Errorf("selection chain %s drops: %v", c.Name, rl)
					}
				}
			}
			if selections != tc.selections || rules != tc.rules {
				t.Errorf("%d selection chains of %d rules, want %d of %d", selections, rules, tc.selections, tc.rules)
			}
			ch, _ := r.Chain(chainIngress)
			drops := 0
			for _, rl := range ch.Rules {
				if rl.Owner.Kind != ruleset.OwnerIsolation || rl.Verdict.Kind != ruleset.VerdictDrop || rl.Counter != counterDeniedIn {
					continue
				}
				drops++
				// A plain set of the map's keys: a lookup in the verdict map
				// would have the kernel validate its jumps twice per commit.
				set, _ := r.Set(rl.Matches[0].Set)
				if set.Map || len(set.Elems) != len(jumps) && set.Name == setIngressIsolated4 {
					t.Errorf("isolation drop looks up %s (map %v, %d elements), want the %d keys of %s as a set", set.Name, set.Map, len(set.Elems), len(jumps), mapIngress4)
				}
			}
			if drops != len(families) {
				t.Errorf("%s has %d isolation drops, want one per family", chainIngress, drops)
			}
		})
	}
}

// TestLocalPartKept: a change that leaves every policy's selection and
// the local pods as they were (a port of a policy) keeps the local part
// of the last result, the same memory, without rebuilding it, and the
// list of counters (the policy compiled again has the same counters and
// owners); a change of a local pod rebuilds it. Both results are
// Compile's.
func TestLocalPartKept(t *testing.T) {
	s := selectionSnapshot(t, DeniedLog{})
	x := NewCompiler()
	before := x.Compile(s)
	counters := x.polCounters
	s.Policies = fixtures.Policies(t, `
{metadata: {name: web-80, namespace: default}, spec: {podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 8080}]}]}}
---
{metadata: {name: api-80, namespace: default}, spec: {podSelector: {matchLabels: {app: api}}, ingress: [{ports: [{port: 80}]}]}}
---
{metadata: {name: back-81, namespace: default}, spec: {podSelector: {matchLabels: {tier: back}}, ingress: [{ports: [{port: 81}]}]}}
`)
	after := x.Compile(s)
	if want := Compile(s); after.String() != want.String() {
		t.Fatalf("Compiler differs from Compile:\n%s", textdiff.Lines(want.String(), after.String()))
	}
	same := func(a, b ruleset.Ruleset) bool {
		m, _ := a.Set(mapIngress4)
		n, _ := b.Set(mapIngress4)
		return len(m.Elems) > 0 && sameSlice(m.Elems, n.Elems)
	}
	if !same(before, after) {
		t.Errorf("a port change rebuilt the pod map")
	}
	if !sameSlice(counters, x.polCounters) {
		t.Errorf("a port change rebuilt the list of counters")
	}
	s.Pods = append(slices.Clone(s.Pods), Pod{Namespace: "default", Name: "web2", Node: "n1",
		Labels: map[string]string{"app": "web"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.1.12")}})
	again := x.Compile(s)
	if want := Compile(s); again.String() != want.String() {
		t.Fatalf("Compiler differs from Compile:\n%s", textdiff.Lines(want.String(), again.String()))
	}
	if same(after, again) {
		t.Errorf("a new local pod kept the pod map")
	}
}

// TestLocalOrder pins the order the local part lists local pods in: by
// address within each family, pods of one address by namespace and name,
// so that the sets' and maps' elements come out sorted (SortElems finds
// them so) and an address two pods share jumps where the first pod by
// namespace and name does; by namespace and name alone once a pod has
// two addresses of one family. A label change of a local pod keeps the
// order; an address change rebuilds it. Every result is Compile's.
func TestLocalOrder(t *testing.T) {
	addrs := func(list ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range list {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	s := Snapshot{Node: Node{Name: "n1"}}
	for _, ns := range []string{"a", "b", "c"} {
		s.Namespaces = append(s.Namespaces, Namespace{Name: ns})
		s.Policies = append(s.Policies, fixtures.Policy(t, "{metadata: {namespace: "+ns+", name: deny}, spec: {podSelector: {}}}"))
	}
	pod := func(ns, name string, ips ...string) Pod {
		return Pod{Namespace: ns, Name: name, Node: "n1", Labels: map[string]string{"app": name}, IPs: addrs(ips...)}
	}
	s.Pods = []Pod{
		pod("c", "x", "10.0.0.5", "fd00::5"), pod("b", "z", "10.0.0.9"), pod("a", "y", "10.0.0.9"),
		pod("b", "w", "10.0.0.1", "fd00::1"), pod("a", "v", "fd00::3"),
	}
	x := NewCompiler()
	check := func(at string, want4 []string, owner9 string) {
		t.Helper()
		got, want := x.Compile(s), Compile(s)
		if got.String() != want.String() {
			t.Fatalf("%s: Compiler differs from Compile:\n%s", at, textdiff.Lines(want.String(), got.String()))
		}
		var names []string
		for _, p := range x.localOrder[0] {
			names = append(names, p.Namespace+"/"+p.Name)
		}
		if !slices.Equal(names, want4) {
			t.Errorf("%s: IPv4 local order %v, want %v", at, names, want4)
		}
		m, _ := got.Set(mapIngress4)
		i := slices.IndexFunc(m.Elems, func(e ruleset.Elem) bool { return e.Key[0] == single(netip.MustParseAddr("10.0.0.9")) })
		if want := policyChainName(dirIngress, owner9+"/deny"); i < 0 || m.Elems[i].Verdict.Chain != want {
			t.Errorf("%s: 10.0.0.9 does not jump to %s: %v", at, want, m.Elems)
		}
	}
	sorted := func(at string, sets map[string][]ruleset.Elem) {
		t.Helper()
		for name, es := range sets {
			if !slices.IsSortedFunc(es, func(a, b ruleset.Elem) int { return strings.Compare(a.Key[0].From, b.Key[0].From) }) {
				t.Errorf("%s: elements of %s listed out of order: SortElems sorts them again", at, name)
			}
		}
	}
	check("first", []string{"b/w", "c/x", "a/y", "b/z"}, "a")
	sorted("first", x.nodeElems())
	sorted("first", x.dispatch())

	order := x.localOrder
	s.Pods = slices.Clone(s.Pods)
	s.Pods[2].Labels = map[string]string{"app": "y2"}
	check("label", []string{"b/w", "c/x", "a/y", "b/z"}, "a")
	if !sameSlice(order[0], x.localOrder[0]) || !sameSlice(order[1], x.localOrder[1]) {
		t.Error("a label change rebuilt the local order")
	}

	s.Pods = slices.Clone(s.Pods)
	s.Pods[2].IPs = addrs("10.0.0.0")
	check("address", []string{"a/y", "b/w", "c/x", "b/z"}, "b")

	s.Pods = append(slices.Clone(s.Pods), pod("c", "t", "10.0.0.9", "10.0.0.2"))
	check("two addresses", []string{"a/y", "b/w", "b/z", "c/t", "c/x"}, "b")
}

// TestChainChanges pins chainChanges: a chain of the same name, base and
// rules' memory stays out of both lists; one whose rules were made again
// (even equal) leaves and joins; the others leave or join.
func TestChainChanges(t *testing.T) {
	rules := func(chain string) []ruleset.Rule {
		return []ruleset.Rule{{Verdict: ruleset.Verdict{Kind: ruleset.VerdictJump, Chain: chain}}}
	}
	kept := ruleset.Chain{Name: "b", Rules: rules("x")}
	remade := ruleset.Chain{Name: "c", Rules: rules("x")}
	last := []ruleset.Chain{{Name: "a", Rules: rules("x")}, kept, remade, {Name: "e"}}
	now := []ruleset.Chain{kept, {Name: "c", Rules: rules("x")}, {Name: "d", Rules: rules("y")}, {Name: "e"}}
	gone, added := chainChanges(last, now)
	var names []string
	for _, ch := range added {
		names = append(names, ch.Name)
	}
	if !slices.Equal(gone, []string{"a", "c"}) || !slices.Equal(names, []string{"c", "d"}) || &added[0].Rules[0] != &now[1].Rules[0] {
		t.Errorf("chainChanges: gone %v, added %v; want gone [a c], added [c d] (c's new rules)", gone, names)
	}
}
