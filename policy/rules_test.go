package policy

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
)

// wideRules returns `rules` ingress rules, each allowing `ports` TCP ports
// from `peers` podSelector peers: the worst shape the API accepts, the one
// whose rules once grew as ports × peers. Rule r allows the odd ports
// from 1001 + 2r (so no two merge) from peers app: peer<r> onwards, so
// that no two rules share a group.
func wideRules(rules, ports, peers int) []networkingv1.NetworkPolicyIngressRule {
	tcp := corev1.ProtocolTCP
	out := make([]networkingv1.NetworkPolicyIngressRule, rules)
	for r := range out {
		for i := r; i < r+ports; i++ {
			out[r].Ports = append(out[r].Ports, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: fixtures.Port(int32(1001 + 2*i))})
		}
		for i := r; i < r+peers; i++ {
			out[r].From = append(out[r].From, networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint("peer", i)}}})
		}
	}
	return out
}

// wideSnapshot is one local pod (app: srv, IPv4 and IPv6) selected by a
// policy of wideRules, and one peer pod per peer selector (dual-stack too).
// Peer pods are n2's: pods[1+i] is peer<i>.
func wideSnapshot(rules, ports, peers int) Snapshot {
	s := Snapshot{
		Node:       Node{Name: "n1", Addrs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}},
		Namespaces: []Namespace{{Name: "default"}},
		Pods: []Pod{{Namespace: "default", Name: "srv", Node: "n1", Labels: map[string]string{"app": "srv"},
			IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}}},
		Policies: []*networkingv1.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "wide"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "srv"}},
				Ingress:     wideRules(rules, ports, peers),
			},
		}},
	}
	for i := 0; i < peers+rules-1; i++ {
		s.Pods = append(s.Pods, Pod{Namespace: "default", Name: fmt.Sprint("peer", i), Node: "n2",
			Labels: map[string]string{"app": fmt.Sprint("peer", i)},
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}),
				netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(i), 14: byte(i >> 8), 13: 1})}})
	}
	return s
}

// TestWideRuleStaysSmall compiles the policy of the finding (1,000 ports
// × 1,000 podSelector peers in one rule): its rules must not grow with
// ports × peers, and its set elements must grow as ports + peers. The old
// layout compiled it to 1,000,018 rules.
func TestWideRuleStaysSmall(t *testing.T) {
	const ports, peers = 1000, 1000
	s := wideSnapshot(1, ports, peers)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := Compile(s)
	runtime.ReadMemStats(&after)
	if len(r.Problems) != 0 {
		t.Fatalf("problems: %v", r.Problems)
	}
	ch, ok := r.Chain(policyChainName(dirIngress, "default/wide"))
	if !ok {
		t.Fatal("no policy chain")
	}
	// One rule per family: the ports set lookup and the peers' union.
	if len(ch.Rules) != 2 {
		t.Errorf("policy chain has %d rules, want 2", len(ch.Rules))
	}
	want := map[string]int{setPorts: ports, setPeers4: peers, setPeers6: peers}
	for name, n := range want {
		if got := sharedElemCount(r, name); got != n {
			t.Errorf("set %s has %d elements, want %d", name, got, n)
		}
	}
	// Allocation grows with the input (≈ 2,000 peer pods and 2,000
	// selectors), not with ports × peers; the old layout allocated
	// hundreds of MiB here.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("compile allocated %d MiB, want at most 64", alloc>>20)
	}
	srv, peer := netip.MustParseAddr("10.0.0.1"), s.Pods[peers].IPs
	cases := []struct {
		src  netip.Addr
		port uint16
		want ruleset.VerdictKind
	}{
		{peer[0], 1001, ruleset.VerdictAccept},
		{peer[0], 1001 + 2*(ports-1), ruleset.VerdictAccept},
		{peer[0], 1002, ruleset.VerdictDrop},                         // between two allowed ports
		{netip.MustParseAddr("10.9.9.9"), 1001, ruleset.VerdictDrop}, // not a peer
	}
	for _, tc := range cases {
		if got, why := ruleset.Trace(r, ruleset.Packet{Src: tc.src, Dst: srv, Proto: ruleset.ProtoTCP, DPort: tc.port}); got != tc.want {
			t.Errorf("%s to port %d: %v, want %v\n%v", tc.src, tc.port, got, tc.want, why)
		}
	}
}

// TestUnionGroupChurn changes the pods of a rule's selector union (a peer
// pod relabelled out of it and back, a pod of a second selector added and
// removed) through one Compiler: each step must change the union's
// elements only, exactly one element, and agree with a fresh Compile.
func TestUnionGroupChurn(t *testing.T) {
	base := loadScenario(t, "testdata/compile/wide-rules.yaml").Snapshot
	relabel := func(s Snapshot, name string, l map[string]string) Snapshot {
		s.Pods = slices.Clone(s.Pods)
		for i := range s.Pods {
			if s.Pods[i].Name == name {
				s.Pods[i].Labels = l
			}
		}
		return s
	}
	added := base
	added.Pods = append(slices.Clone(base.Pods), Pod{Namespace: "default", Name: "b2", Node: "n2",
		Labels: map[string]string{"app": "b"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.2.13")}})
	steps := []struct {
		name string
		s    Snapshot
		set  string
		add  bool
	}{
		{"peer a leaves the union", relabel(base, "a", map[string]string{"app": "gone"}), setPeers4, false},
		{"peer a joins again", base, setPeers4, true},
		{"second pod of selector b", added, setPeers4, true},
		{"it goes", base, setPeers4, false},
	}
	x := NewCompiler()
	prev := x.Compile(base)
	for _, st := range steps {
		got := x.Compile(st.s)
		if want := Compile(st.s); got.String() != want.String() {
			t.Fatalf("%s: Compiler differs from Compile:\n%s", st.name, textdiff.Lines(want.String(), got.String()))
		}
		ch := ruleset.Diff(prev, got)
		if ch.Full || len(ch.AddSets)+len(ch.DelSets)+len(ch.AddChains)+len(ch.ReplaceChains)+len(ch.DelChains) != 0 {
			t.Errorf("%s: want element changes only, got %s", st.name, ch)
		}
		elems := ch.DelElems
		if st.add {
			elems = ch.AddElems
		}
		// IPv4 only: pod a's IPv6 address changes peers6 too.
		n := 0
		for _, e := range elems {
			if inShared(e.Set, st.set) {
				n += len(e.Elems)
			}
		}
		if n != 1 {
			t.Errorf("%s: %s changes %d elements, want 1 (%s)", st.name, st.set, n, ch)
		}
		prev = got
	}
}

// TestProtoNumberTakesTheAPISpelling pins that a port's protocol is read
// as the API spells it: in capitals, TCP when absent.
func TestProtoNumberTakesTheAPISpelling(t *testing.T) {
	for _, tc := range []struct {
		proto string // "" for none
		want  uint8
		ok    bool
	}{
		{"", ruleset.ProtoTCP, true},
		{"TCP", ruleset.ProtoTCP, true},
		{"UDP", ruleset.ProtoUDP, true},
		{"SCTP", ruleset.ProtoSCTP, true},
		{"tcp", 0, false},
		{"ICMP", 0, false},
	} {
		var p *corev1.Protocol
		if tc.proto != "" {
			p = fixtures.Ptr(corev1.Protocol(tc.proto))
		}
		got, err := protoNumber(p)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("protoNumber(%q) = %d, %v; want %d, ok %v", tc.proto, got, err, tc.want, tc.ok)
		}
	}
}
