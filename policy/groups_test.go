package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fromApp is an ingress policy in default selecting app=web and allowing
// pods app=<app> of its namespace.
func fromApp(name, app string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}},
			}}},
		},
	}
}

func groupSnapshot(policies ...*networkingv1.NetworkPolicy) Snapshot {
	s := Snapshot{Node: Node{Name: "n1"}, Policies: policies}
	for i, app := range []string{"web", "db", "db", "cache"} {
		s.Pods = append(s.Pods, Pod{Namespace: "default", Name: fmt.Sprint("p", i), Node: "n1",
			Labels: map[string]string{"app": app}, IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)})}})
	}
	return s
}

// inShared tells whether set is shared set name or one of its shards.
func inShared(set, name string) bool {
	return set == name || strings.HasPrefix(set, name+"-")
}

// lookupIDs returns the ids of every lookup of shared set set (any shard)
// in r's rules.
func lookupIDs(r ruleset.Ruleset, set string) []uint32 {
	var out []uint32
	for _, c := range r.Chains {
		for _, rule := range c.Rules {
			for _, m := range rule.Matches {
				if inShared(m.Set, set) && m.ID != 0 {
					out = append(out, m.ID)
				}
			}
		}
	}
	return out
}

// TestSharedGroups pins the shared-set layout: policies with equal peers
// share one group of elements under one id, the group lives as long as one
// policy uses it, and a definition keeps its id while others come and go.
func TestSharedGroups(t *testing.T) {
	x := NewCompiler()
	r := x.Compile(groupSnapshot(fromApp("a", "db"), fromApp("b", "db")))
	ids := lookupIDs(r, setPeers4)
	if len(ids) != 2 || ids[0] != ids[1] {
		t.Fatalf("two policies with equal peers look up ids %v, want one id twice", ids)
	}
	if n := sharedElemCount(r, setPeers4); n != 2 {
		t.Fatalf("peers4 holds %d elements, want the 2 db pods once:\n%s", n, r)
	}
	id := ids[0]

	r = x.Compile(groupSnapshot(fromApp("b", "db"), fromApp("c", "cache")))
	if n := sharedElemCount(r, setPeers4); n != 3 {
		t.Errorf("after deleting one user: peers4 holds %d elements, want 2 db + 1 cache:\n%s", n, r)
	}
	if got := lookupIDs(r, setPeers4); !slices.Contains(got, id) {
		t.Errorf("the db peers changed id: %v, want %d kept", got, id)
	}

	r = x.Compile(groupSnapshot(fromApp("c", "cache")))
	if sharedElemCount(r, setPeers4) != 1 || strings.Contains(r.String(), fmt.Sprint(id)) {
		t.Errorf("after deleting the last user the db group must be gone:\n%s", r)
	}
	if _, ok := x.ids[fromDef(x, id)]; ok {
		t.Errorf("id %d is still reserved", id)
	}
}

// fromDef returns the definition id was last given to ("" if none now).
func fromDef(x *Compiler, id uint32) string {
	return x.idOwner[id]
}

// TestDefIDProbesPastCollisions pins what happens when two definitions
// hash alike: the later one takes the next free id, and the id is freed
// with its last group.
func TestDefIDProbesPastCollisions(t *testing.T) {
	x := NewCompiler()
	h := x.defID("a")
	x.releaseIDs() // "a" has no group: its id is free again
	if _, ok := x.idOwner[h]; ok {
		t.Fatalf("id %d of an unused definition is still reserved", h)
	}
	x.idOwner[h], x.ids["other"] = "other", h // "other" holds a's hash
	if got := x.defID("a"); got != h+1 {
		t.Errorf("colliding definition got id %d, want %d", got, h+1)
	}
	if got := x.defID("a"); got != h+1 {
		t.Errorf("second call gave %d, want the same id %d", got, h+1)
	}
}

// TestHashSize pins the size classes of the shared hash sets: at least
// the elements, a power of two, never below minHashSize.
func TestHashSize(t *testing.T) {
	for n, want := range map[int]uint32{0: 1 << 10, 1: 1 << 10, 1024: 1 << 10, 1025: 1 << 11, 17268: 1 << 15, 65536: 1 << 16, 65537: 1 << 17, 100000: 1 << 17} {
		if got := hashSize(n); got != want {
			t.Errorf("hashSize(%d) = %d, want %d", n, got, want)
		}
	}
}

// sharedElemCount counts the elements of shared set name in r, over its
// shards.
func sharedElemCount(r ruleset.Ruleset, name string) int {
	n := 0
	for i := range setShards {
		if s, ok := r.Set(nthShard(name, i)); ok {
			n += len(s.Elems)
		}
	}
	return n
}

// TestSharedSetsAreSharded pins the split of the shared sets, interval
// (blocks4) and hash (peers4): a group lives in the shard of its id, which
// every lookup of it names; shard 0 is the set itself and always there,
// the others only while they hold a group; and the groups of many
// definitions spread over the shards (no shard holds more than twice its
// share).
func TestSharedSetsAreSharded(t *testing.T) {
	t.Run(setBlocks4, func(t *testing.T) {
		testSharding(t, setBlocks4, setBlocks6, 1, func(i int) networkingv1.NetworkPolicyPeer {
			return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("172.16.%d.0/24", i)}}
		})
	})
	t.Run(setPeers4, func(t *testing.T) {
		testSharding(t, setPeers4, setPeers6, 2, func(i int) networkingv1.NetworkPolicyPeer {
			// The db pod, each time by another selector: 256 definitions.
			return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{
				MatchLabels:      map[string]string{"app": "db"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "x", Operator: metav1.LabelSelectorOpNotIn, Values: []string{fmt.Sprint(i)}}},
			}}
		})
	})
}

// testSharding checks the split of shared set name with 256 policies
// whose peers, peer(i), are 256 definitions of elems elements each;
// empty names the set of the other family, which none of them uses.
func testSharding(t *testing.T, name, empty string, elems int, peer func(int) networkingv1.NetworkPolicyPeer) {
	var policies []*networkingv1.NetworkPolicy
	for i := range 256 {
		p := fromApp(fmt.Sprint("p", i), "db")
		p.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{peer(i)}
		policies = append(policies, p)
	}
	x := NewCompiler()
	r := x.Compile(groupSnapshot(policies...))
	counts := map[string]int{}
	for _, c := range r.Chains {
		for _, rule := range c.Rules {
			for _, m := range rule.Matches {
				if m.ID == 0 || !strings.HasPrefix(m.Set, name) {
					continue
				}
				if want := shardName(name, m.ID); m.Set != want {
					t.Errorf("rule %s looks id %d up in %s, want %s", rule.Owner, m.ID, m.Set, want)
				}
				s, ok := r.Set(m.Set)
				if !ok || !slices.ContainsFunc(s.Elems, func(e ruleset.Elem) bool { return e.Key[0].From == ruleset.IDBytes(m.ID) }) {
					t.Errorf("set %s (present %v) lacks the group of id %d", m.Set, ok, m.ID)
				}
				counts[m.Set]++
			}
		}
	}
	if len(counts) != setShards {
		t.Errorf("256 groups use %d shards, want %d: %v", len(counts), setShards, counts)
	}
	for name, n := range counts {
		if n > 2*256/setShards {
			t.Errorf("shard %s holds %d of 256 groups", name, n)
		}
	}
	r = x.Compile(groupSnapshot(policies[0]))
	var id uint32
	for _, c := range r.Chains {
		for _, rule := range c.Rules {
			for _, m := range rule.Matches {
				if m.ID != 0 && strings.HasPrefix(m.Set, name) {
					id = m.ID
				}
			}
		}
	}
	want := map[string]bool{name: true, shardName(name, id): true}
	for i := range setShards {
		shard := nthShard(name, i)
		if _, ok := r.Set(shard); ok != want[shard] {
			t.Errorf("with the group of id %d left, shard %s present=%v, want %v", id, shard, ok, want[shard])
		}
	}
	if n := sharedElemCount(r, name); n != elems {
		t.Errorf("one group left: the shards hold %d elements, want %d", n, elems)
	}
	if _, ok := r.Set(empty); !ok {
		t.Errorf("shard 0 of %s (empty) is gone", empty)
	}
}

// TestPeerChangeKeepsRules pins refreshPeers: a pod joining a policy's
// peers changes the elements of its group only; the policy is not
// compiled again, its chain keeps its rules (the same memory), the lists
// of every policy's chains and counters stay, and the result is
// Compile's. A pod joining its selection compiles it again.
func TestPeerChangeKeepsRules(t *testing.T) {
	p := fromApp("a", "db")
	s := groupSnapshot(p)
	x := NewCompiler()
	first := x.Compile(s)
	before, _ := first.Chain(policyChainName(dirIngress, policyKey(p)))
	counters := x.polCounters
	relabel := func(i int, app string) {
		s.Pods = slices.Clone(s.Pods)
		s.Pods[i].Labels = map[string]string{"app": app}
	}
	relabel(3, "db") // cache joins the peers
	r := x.Compile(s)
	if want := Compile(s); r.String() != want.String() {
		t.Fatalf("Compiler differs from Compile:\n%s", textdiff.Lines(want.String(), r.String()))
	}
	if n := sharedElemCount(r, setPeers4); n != 3 {
		t.Errorf("peers4 holds %d elements, want the 3 db pods", n)
	}
	after, _ := r.Chain(policyChainName(dirIngress, policyKey(p)))
	if len(after.Rules) == 0 || &after.Rules[0] != &before.Rules[0] {
		t.Errorf("a peer change compiled the policy again (its rules are new)")
	}
	if !sameSlice(x.polCounters, counters) {
		t.Errorf("a peer change rebuilt the list of every policy's counters")
	}
	for _, ch := range first.Chains {
		if again, _ := r.Chain(ch.Name); !slices.Contains(x.rebuilt, ch.Name) && !sameSlice(again.Rules, ch.Rules) {
			t.Errorf("a peer change replaced chain %s", ch.Name)
		}
	}
	relabel(3, "web") // joins the selection
	r = x.Compile(s)
	if want := Compile(s); r.String() != want.String() {
		t.Fatalf("Compiler differs from Compile:\n%s", textdiff.Lines(want.String(), r.String()))
	}
	if again, _ := r.Chain(policyChainName(dirIngress, policyKey(p))); &again.Rules[0] == &after.Rules[0] {
		t.Errorf("a selection change did not compile the policy again")
	}
}

// TestShardSizeHoldsItsClass: a shard of a shared hash set grows its size
// class at once, keeps it while a pod comes and goes across the boundary
// (no new definition, so no full apply), and falls back to its class once
// its elements fill no more than a quarter of the size.
func TestShardSizeHoldsItsClass(t *testing.T) {
	x := NewCompiler()
	compile := func(dbPods int) (ruleset.Ruleset, uint32) {
		t.Helper()
		s := groupSnapshot(fromApp("p", "db")) // two db pods of its own
		for i := range dbPods - 2 {
			s.Pods = append(s.Pods, Pod{Namespace: "default", Name: fmt.Sprint("db", i), Node: "n2",
				Labels: map[string]string{"app": "db"}, IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}})
		}
		r := x.Compile(s)
		ids := lookupIDs(r, setPeers4)
		if len(ids) != 1 {
			t.Fatalf("%d lookups of %s, want 1", len(ids), setPeers4)
		}
		set, ok := r.Set(shardName(setPeers4, ids[0]))
		if !ok || len(set.Elems) != dbPods {
			t.Fatalf("shard of the db group: present %v, %d elements, want %d", ok, len(set.Elems), dbPods)
		}
		return r, set.Size
	}
	prev, size := compile(1024)
	if size != 1024 {
		t.Fatalf("1,024 elements: size %d, want 1,024", size)
	}
	for i, step := range []struct {
		pods int
		size uint32
		full bool
	}{
		{1025, 2048, true}, // grows at once
		{1024, 2048, false},
		{1025, 2048, false},
		{1024, 2048, false},
		{513, 2048, false}, // still more than a quarter
		{512, 1024, true},  // a quarter: back to its class
		{1024, 1024, false},
	} {
		r, size := compile(step.pods)
		if size != step.size {
			t.Errorf("step %d, %d elements: size %d, want %d", i, step.pods, size, step.size)
		}
		if ch := ruleset.Diff(prev, r); ch.Full != step.full {
			t.Errorf("step %d, %d elements: full apply %v (%s), want %v", i, step.pods, ch.Full, ch.Reason, step.full)
		}
		prev = r
	}
}

// TestDefKeys pins the keys of definitions: each part prefixed by its
// length (two part lists never give one key), a selector's labels sorted,
// an ipBlock union its bounds' bytes.
func TestDefKeys(t *testing.T) {
	long := strings.Repeat("x", 1234)
	sel := &metav1.LabelSelector{
		MatchLabels:      map[string]string{"b": "2", "a": "1"},
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: metav1.LabelSelectorOpIn, Values: []string{"v", "w"}}},
	}
	ivs := []interval{{netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("10.0.0.255")}, {netip.MustParseAddr("::1"), netip.MustParseAddr("::2")}}
	for _, tc := range []struct{ got, want string }{
		{defKey("ns", "a", "bc"), "ns 1:a 2:bc"},
		{defKey("ns", "", "a b"), "ns 0: 3:a b"},
		{defKey("x", long), "x 1234:" + long},
		{defKey("pods"), "pods"},
		{selectorKey(sel), "a\x011\x00b\x012\x00\x02k\x01In\x01v\x01w\x00"},
		{selectorKey(&metav1.LabelSelector{}), ""},
		{blocksDef(ivs), "blocks 40:\x0a\x00\x00\x00\x0a\x00\x00\xff" + string(netip.MustParseAddr("::1").AsSlice()) + string(netip.MustParseAddr("::2").AsSlice())},
	} {
		if tc.got != tc.want {
			t.Errorf("key %q, want %q", tc.got, tc.want)
		}
	}
}

// TestEqualGroupKeepsItsList: a peer pod changing without changing the
// addresses of its group (a label the selector ignores) lists the group
// again, finds the elements the group in use holds, and hands that list
// to every policy using it through the memo, so useGroups compares the
// elements once per group, not once per policy; the group then records
// the versions it was listed at.
func TestEqualGroupKeepsItsList(t *testing.T) {
	s := groupSnapshot(fromApp("a", "db"), fromApp("b", "db"))
	x := NewCompiler()
	x.Compile(s)
	s.Pods = slices.Clone(s.Pods)
	s.Pods[1].Labels = map[string]string{"app": "db", "tier": "back"}
	r := x.Compile(s)
	if want := Compile(s); r.String() != want.String() {
		t.Fatalf("Compiler differs from Compile:\n%s", textdiff.Lines(want.String(), r.String()))
	}
	n := 0
	for k, m := range x.groupMemo {
		rec := x.groups[groupKey{m.set, m.def}]
		if rec == nil || m.from == nil {
			continue
		}
		n++
		if !sameSlice(m.elems, rec.elems) {
			t.Errorf("group %v: the memo holds a list of its own, not the group's", k)
		}
		if !rec.computedFrom(m.from, versions(m.from)) {
			t.Errorf("group %v: recorded versions %v, want the latest %v", k, rec.vers, versions(m.from))
		}
	}
	if n == 0 {
		t.Fatal("no peer group listed again")
	}
}
