package nft

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// point is the range of one address.
func point(s string) ruleset.Range {
	b := string(netip.MustParseAddr(s).AsSlice())
	return ruleset.Range{From: b, To: b}
}

// ruleID is the range of one rule id.
func ruleID(n uint32) ruleset.Range {
	return ruleset.Range{From: ruleset.IDBytes(n), To: ruleset.IDBytes(n)}
}

func lookup(set string, id uint32, f ruleset.Field) ruleset.Match {
	return ruleset.Match{Kind: ruleset.MatchLookup, Set: set, ID: id, Fields: []ruleset.Field{f}}
}

var (
	accept = ruleset.Verdict{Kind: ruleset.VerdictAccept}
	drop   = ruleset.Verdict{Kind: ruleset.VerdictDrop}
)

func jump(chain string) ruleset.Verdict {
	return ruleset.Verdict{Kind: ruleset.VerdictJump, Chain: chain}
}

// jumpTo is jump as a map element's verdict.
func jumpTo(chain string) *ruleset.Verdict {
	v := jump(chain)
	return &v
}

// batchRuleset is a small table with every kind of object the applier
// writes: named counters, a base chain, regular chains, a verdict map, an
// interval set, a set keyed by rule id (typeof) and a set of 1,500
// elements (two element messages).
func batchRuleset() ruleset.Ruleset {
	big := ruleset.Set{Name: "big4", Key: []ruleset.Type{ruleset.TypeIPv4}}
	for i := range 1500 {
		big.Elems = append(big.Elems, ruleset.Elem{Key: []ruleset.Range{point(fmt.Sprintf("10.2.%d.%d", i/256, i%256))}})
	}
	return ruleset.Ruleset{
		Counters: []ruleset.Counter{{Name: "denied-ingress"}, {Name: "pol-a-r0", OwnerRef: new(ruleOwner("default", "a", 0))}},
		Sets: []ruleset.Set{
			big,
			{Name: "blocks4", Key: []ruleset.Type{ruleset.TypeIPv4}, Interval: true, Elems: []ruleset.Elem{
				{Key: []ruleset.Range{{From: string([]byte{10, 1, 0, 0}), To: string([]byte{10, 1, 255, 255})}}},
			}},
			{Name: "ingress-pods4", Key: []ruleset.Type{ruleset.TypeIPv4}, Map: true, Elems: []ruleset.Elem{
				{Key: []ruleset.Range{point("10.0.0.1")}, Verdict: jumpTo("pol-a")},
			}},
			{Name: "peers4", Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv4}, Comment: "selector peers by rule id", Elems: []ruleset.Elem{
				{Key: []ruleset.Range{ruleID(1), point("10.0.0.2")}},
				{Key: []ruleset.Range{ruleID(1), point("10.0.0.3")}},
			}},
		},
		Chains: []ruleset.Chain{
			{Name: "forward", Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookForward}, Rules: []ruleset.Rule{
				{Matches: []ruleset.Match{{Kind: ruleset.MatchCtState, CtStates: ruleset.CtEstablished | ruleset.CtRelated}}, Verdict: accept},
				{Verdict: ruleset.Verdict{Kind: ruleset.VerdictVMap, Map: "ingress-pods4", Fields: []ruleset.Field{ruleset.FieldIPDaddr}}},
			}},
			{Name: "isolated", Rules: []ruleset.Rule{{Counter: "denied-ingress", Verdict: drop}}},
			{Name: "pol-a", Rules: []ruleset.Rule{
				{Matches: []ruleset.Match{lookup("peers4", 1, ruleset.FieldIPSaddr)}, Counter: "pol-a-r0", Verdict: accept, Owner: ruleOwner("default", "a", 0)},
				{Matches: []ruleset.Match{lookup("blocks4", 0, ruleset.FieldIPSaddr)}, Verdict: accept},
				{Matches: []ruleset.Match{lookup("big4", 0, ruleset.FieldIPSaddr)}, Verdict: accept},
				{Verdict: jump("isolated")},
			}},
		},
	}
}

// changedRuleset is batchRuleset after a change of every kind Diff
// expresses: elements in and out, a set and a chain added, a set and a
// chain deleted, a chain's rules replaced, a counter added and one
// deleted.
func changedRuleset() ruleset.Ruleset {
	r := batchRuleset()
	r.Counters = []ruleset.Counter{{Name: "pol-a-r0", OwnerRef: new(ruleOwner("default", "a", 0))}, {Name: "pol-b-r0", OwnerRef: new(ruleOwner("default", "b", 0))}}
	r.Sets = []ruleset.Set{
		r.Sets[0], // big4
		{Name: "ingress-pods4", Key: []ruleset.Type{ruleset.TypeIPv4}, Map: true, Elems: []ruleset.Elem{
			{Key: []ruleset.Range{point("10.0.0.1")}, Verdict: jumpTo("pol-a")},
			{Key: []ruleset.Range{point("10.0.0.5")}, Verdict: jumpTo("pol-b")},
		}},
		{Name: "peers4", Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv4}, Comment: "selector peers by rule id", Elems: []ruleset.Elem{
			{Key: []ruleset.Range{ruleID(1), point("10.0.0.2")}},
			{Key: []ruleset.Range{ruleID(1), point("10.0.0.4")}},
		}},
		{Name: "peers6", Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv6}, Comment: "selector peers by rule id", Elems: []ruleset.Elem{
			{Key: []ruleset.Range{ruleID(2), point("fd00::2")}},
		}},
	}
	r.Chains = []ruleset.Chain{
		r.Chains[0], // forward
		{Name: "pol-a", Rules: []ruleset.Rule{
			{Matches: []ruleset.Match{lookup("peers4", 1, ruleset.FieldIPSaddr)}, Counter: "pol-a-r0", Verdict: accept, Owner: ruleOwner("default", "a", 0)},
			{Matches: []ruleset.Match{lookup("big4", 0, ruleset.FieldIPSaddr)}, Verdict: accept},
			{Verdict: drop},
		}},
		{Name: "pol-b", Rules: []ruleset.Rule{
			{Matches: []ruleset.Match{lookup("peers6", 2, ruleset.FieldIP6Saddr)}, Counter: "pol-b-r0", Verdict: accept, Owner: ruleOwner("default", "b", 0)},
			{Verdict: drop},
		}},
	}
	return r
}

// TestBatchMessageOrder pins, without root, the netlink messages of each
// way Apply writes a ruleset, in order (testdata/batches/*.txt; -update
// rewrites them): the first, full apply; a change; and a change the kernel
// refuses, which falls back to a full apply. Every batch asks for one
// acknowledgement (its last message) and no echo.
func TestBatchMessageOrder(t *testing.T) {
	if ch := ruleset.Diff(batchRuleset(), changedRuleset()); ch.Full {
		t.Fatalf("the change is not incremental: %s", ch)
	}
	cases := []struct {
		name string
		// refuse is the message of the second batch the kernel refuses.
		refuse int
		// before is applied first; only the batches of the second Apply
		// are compared.
		before *ruleset.Ruleset
	}{
		{name: "full"},
		{name: "changes", before: ptr(batchRuleset())},
		{name: "fallback", before: ptr(batchRuleset()), refuse: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{refuse: func(n int) (int, unix.Errno) {
				if n == 2 {
					return tc.refuse, unix.ENOENT
				}
				return 0, 0
			}}
			a := recordingApplier(t, r)
			ctx := context.Background()
			want, from := batchRuleset(), 0
			if tc.before != nil {
				if _, err := a.Apply(ctx, *tc.before); err != nil {
					t.Fatal(err)
				}
				want, from = changedRuleset(), len(r.batches)
			}
			if _, err := a.Apply(ctx, want); err != nil {
				t.Fatalf("apply: %v", err)
			}
			textdiff.Golden(t, filepath.Join("testdata", "batches", tc.name+".txt"), describeBatches(t, r, from), *update)
			sent := len(r.batches)
			if _, err := a.Apply(ctx, want); err != nil || len(r.batches) != sent {
				t.Errorf("applying the applied ruleset again: %v, %d more batches; want none", err, len(r.batches)-sent)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestApplyFailsWhenTheFullFallbackFails pins what Apply reports when the
// kernel refuses the change and then the full table as well: both errors,
// naming the messages refused; the next Apply is a full one again.
func TestApplyFailsWhenTheFullFallbackFails(t *testing.T) {
	r := &recorder{refuse: func(n int) (int, unix.Errno) {
		if n > 1 {
			return 3, unix.ENOENT
		}
		return 0, 0
	}}
	a := recordingApplier(t, r)
	ctx := context.Background()
	if _, err := a.Apply(ctx, batchRuleset()); err != nil {
		t.Fatal(err)
	}
	_, err := a.Apply(ctx, changedRuleset())
	if !errors.Is(err, unix.ENOENT) || len(r.batches) != 3 {
		t.Fatalf("Apply = %v after %d batches; want the refusals of the change and of the full table", err, len(r.batches))
	}
	if a.last != nil {
		t.Error("the applier still trusts a table the kernel refused")
	}
}

// TestApplyDeadlineComesFromTheContext pins how the caller bounds a batch:
// the socket's deadline is the context's while the applier waits for the
// kernel's answer and none afterwards, and a context already done sends
// nothing.
func TestApplyDeadlineComesFromTheContext(t *testing.T) {
	r := &recorder{}
	a := recordingApplier(t, r)
	deadline := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if _, err := a.Apply(ctx, batchRuleset()); err != nil {
		t.Fatal(err)
	}
	if len(r.deadlines) != 2 || !r.deadlines[0].Equal(deadline) || !r.deadlines[1].IsZero() {
		t.Errorf("socket deadlines %v, want %v then none", r.deadlines, deadline)
	}
	cancel()
	_, err := a.Apply(ctx, changedRuleset())
	if !errors.Is(err, context.Canceled) || len(r.batches) != 1 {
		t.Errorf("Apply with a cancelled context = %v after %d batches; want context.Canceled and nothing sent", err, len(r.batches))
	}
}

// ruleOwner owns a rule of policy ns/name's ingress.
func ruleOwner(ns, name string, rule int) ruleset.Owner {
	return ruleset.Owner{Kind: ruleset.OwnerPolicyRule, Namespace: ns, Policy: name, Direction: ruleset.Ingress, Rule: rule}
}

// TestBatchMarshalMatchesLibrary pins batchSocket's encoding of a batch:
// each message numbered in turn (a number it has stays), padded to the
// netlink alignment, byte for byte as netlink.Message.MarshalBinary
// encodes it, one after the other.
func TestBatchMarshalMatchesLibrary(t *testing.T) {
	msgs := []netlink.Message{
		{Header: netlink.Header{Type: 0x10, Flags: netlink.Request}, Data: []byte{0, 0, 0, 10}},
		{Header: netlink.Header{Type: 0xa06, Flags: netlink.Request | netlink.Create}, Data: []byte{1, 2, 3, 4, 5}},
		{Header: netlink.Header{Type: 0xa06, Flags: netlink.Request, Sequence: 77}, Data: []byte{6}},
		{Header: netlink.Header{Type: 0x11, Flags: netlink.Request}},
	}
	s := &batchSocket{seq: 40}
	got := s.marshal(msgs)
	var want []byte
	for _, m := range msgs {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("batch\n% x\nwant (netlink.Message.MarshalBinary)\n% x", got, want)
	}
	if seqs := [4]uint32{msgs[0].Header.Sequence, msgs[1].Header.Sequence, msgs[2].Header.Sequence, msgs[3].Header.Sequence}; seqs != [4]uint32{41, 42, 77, 43} {
		t.Errorf("sequence numbers %v, want 41 42 77 43", seqs)
	}
}

// TestFullApplyAddsLookedUpSetsFirst pins the order of a full apply's
// sets: those the rules look up most first, the others by name. The kernel
// finds a rule's set by walking the table's sets in the order they were
// added; in name order a dense table's lookups walked past every set
// named before the shared ones.
func TestFullApplyAddsLookedUpSetsFirst(t *testing.T) {
	lookup := func(set string) ruleset.Rule {
		return ruleset.Rule{
			Matches: []ruleset.Match{{Kind: ruleset.MatchLookup, Fields: []ruleset.Field{ruleset.FieldIPSaddr}, Set: set}},
			Verdict: ruleset.Verdict{Kind: ruleset.VerdictAccept},
		}
	}
	set := func(name string) ruleset.Set {
		return ruleset.Set{Name: name, Key: []ruleset.Type{ruleset.TypeIPv4}}
	}
	r := ruleset.Ruleset{
		Sets: []ruleset.Set{set("a-unused"), set("b-once"), set("z-twice")},
		Chains: []ruleset.Chain{{Name: "c", Rules: []ruleset.Rule{
			lookup("z-twice"), lookup("b-once"), lookup("z-twice"),
		}}},
	}
	rec := &recorder{}
	if err := recordingApplier(t, rec).ApplyFull(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range rec.batches[0] {
		if d := describeMessage(t, m); strings.HasPrefix(d, "NEWSET ") {
			got = append(got, strings.TrimPrefix(d, "NEWSET "))
		}
	}
	if want := []string{"z-twice", "b-once", "a-unused"}; !slices.Equal(got, want) {
		t.Errorf("sets added in order %v, want %v", got, want)
	}
}

// TestFullApplyKeepsRuleOrder pins that a full apply whose rules are
// encoded on two goroutines (ruleJobs) sends them as one would: chain by
// chain in the ruleset's order, each chain's rules in order, whichever
// goroutine encoded them.
func TestFullApplyKeepsRuleOrder(t *testing.T) {
	var r ruleset.Ruleset
	var want []string
	for i := range 5*ruleJobChains + 3 {
		c := ruleset.Chain{Name: fmt.Sprintf("c%04d", i)}
		for j := range i%3 + 1 {
			owner := ruleset.Owner{Kind: ruleset.OwnerPolicy, Namespace: "ns", Policy: fmt.Sprint(j)}
			c.Rules = append(c.Rules, ruleset.Rule{Verdict: ruleset.Verdict{Kind: ruleset.VerdictAccept}, Owner: owner})
			want = append(want, c.Name+" "+owner.String())
		}
		r.Chains = append(r.Chains, c)
	}
	rec := &recorder{}
	if err := recordingApplier(t, rec).ApplyFull(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range rec.batches[0] {
		if uint16(m.Header.Type&0xff) != unix.NFT_MSG_NEWRULE {
			continue
		}
		attrs := attributes(t, m)
		comment := userdata.Get(attrs[unix.NFTA_RULE_USERDATA], userdata.TypeComment)
		got = append(got, str(attrs[unix.NFTA_RULE_CHAIN])+" "+strings.TrimRight(string(comment), "\x00"))
	}
	if !slices.Equal(got, want) {
		t.Errorf("rules sent in another order:\n%s", textdiff.Lines(strings.Join(want, "\n"), strings.Join(got, "\n")))
	}
}
