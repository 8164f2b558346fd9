package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

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

// lookupIDs returns the ids of every lookup of set in r's rules.
func lookupIDs(r ruleset.Ruleset, set string) []uint32 {
	var out []uint32
	for _, c := range r.Chains {
		for _, rule := range c.Rules {
			for _, m := range rule.Matches {
				if m.Set == set && m.ID != 0 {
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
	peers, _ := r.Set(setPeers4)
	if len(peers.Elems) != 2 {
		t.Fatalf("peers4 holds %d elements, want the 2 db pods once:\n%s", len(peers.Elems), r)
	}
	id := ids[0]

	r = x.Compile(groupSnapshot(fromApp("b", "db"), fromApp("c", "cache")))
	if peers, _ := r.Set(setPeers4); len(peers.Elems) != 3 {
		t.Errorf("after deleting one user: peers4 holds %d elements, want 2 db + 1 cache:\n%s", len(peers.Elems), r)
	}
	if got := lookupIDs(r, setPeers4); !slices.Contains(got, id) {
		t.Errorf("the db peers changed id: %v, want %d kept", got, id)
	}

	r = x.Compile(groupSnapshot(fromApp("c", "cache")))
	peers, _ = r.Set(setPeers4)
	if len(peers.Elems) != 1 || strings.Contains(r.String(), fmt.Sprint(id)) {
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
// shards when it is split.
func sharedElemCount(r ruleset.Ruleset, name string) int {
	n := 0
	for i := range setShards {
		if s, ok := r.Set(nthShard(name, i)); ok {
			n += len(s.Elems)
		}
		if !sharded(name) {
			break
		}
	}
	return n
}

// TestIntervalSetsAreSharded pins the split of the shared interval sets:
// a group lives in the shard of its id, which every lookup of it names;
// shard 0 is the set itself and always there, the others only while they
// hold a group; and the groups of many definitions spread over the shards
// (no shard holds more than twice its share).
func TestIntervalSetsAreSharded(t *testing.T) {
	for _, sk := range skeletonSets {
		if want := sk.Interval && sk.Key[0] == ruleset.TypeID; sharded(sk.Name) != want {
			t.Errorf("set %s: sharded %v, want %v (an interval set keyed by a rule id)", sk.Name, !want, want)
		}
	}
	var policies []*networkingv1.NetworkPolicy
	for i := range 256 {
		p := fromApp(fmt.Sprint("p", i), "db")
		p.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("172.16.%d.0/24", i)}}}
		policies = append(policies, p)
	}
	x := NewCompiler()
	r := x.Compile(groupSnapshot(policies...))
	counts := map[string]int{}
	for _, c := range r.Chains {
		for _, rule := range c.Rules {
			for _, m := range rule.Matches {
				if m.ID == 0 || !strings.HasPrefix(m.Set, setBlocks4) {
					continue
				}
				if want := shardName(setBlocks4, m.ID); m.Set != want {
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
				if m.ID != 0 && strings.HasPrefix(m.Set, setBlocks4) {
					id = m.ID
				}
			}
		}
	}
	want := map[string]bool{setBlocks4: true, shardName(setBlocks4, id): true}
	for i := range setShards {
		name := nthShard(setBlocks4, i)
		if _, ok := r.Set(name); ok != want[name] {
			t.Errorf("with the group of id %d left, shard %s present=%v, want %v", id, name, ok, want[name])
		}
	}
	if n := sharedElemCount(r, setBlocks4); n != 1 {
		t.Errorf("one /24 left: the shards hold %d elements, want 1", n)
	}
	if _, ok := r.Set(setBlocks6); !ok {
		t.Error("shard 0 of blocks6 (empty) is gone")
	}
}
