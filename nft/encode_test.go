package nft

import (
	"bytes"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// kernelRule compiles one rule to expressions with an exprBuf of its own,
// for the library's encoding to compare with (see exprBuf.rule).
func kernelRule(chain *nftables.Chain, r ruleset.Rule, interval func(string) bool) *nftables.Rule {
	return new(exprBuf).rule(chain, r, interval)
}

// everyRuleKind is a chain with a rule of every kind kernelRule encodes
// that compiled clusters may lack: logs (with and without a rate), marks,
// tproxy, masquerade, the reverse-path test, interface names, negated
// lookups, port ranges and protocols without ports, mark tests.
func everyRuleKind() ruleset.Ruleset {
	l4 := func(proto uint8, from, to uint16, all bool) ruleset.Match {
		return ruleset.Match{Kind: ruleset.MatchPort, Proto: proto, PortFrom: from, PortTo: to, AllPorts: all}
	}
	return ruleset.Ruleset{
		Sets: []ruleset.Set{
			{Name: "ports", Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeProto, ruleset.TypePort}, Interval: true},
			{Name: "local-pods6", Key: []ruleset.Type{ruleset.TypeIPv6}},
		},
		Chains: []ruleset.Chain{{Name: "all", Rules: []ruleset.Rule{
			{Matches: []ruleset.Match{l4(6, 80, 80, false)}, Log: &ruleset.Log{Prefix: "weir ", Group: 3, Rate: 10}, Verdict: drop},
			{Matches: []ruleset.Match{l4(17, 1000, 2000, false)}, Log: &ruleset.Log{Prefix: "x", Group: 1}},
			{Matches: []ruleset.Match{l4(1, 0, 0, true)}, Mark: &ruleset.MarkSet{Mask: 0xff00, Value: 0x100}},
			{Matches: []ruleset.Match{l4(6, 53, 53, false)}, Mark: &ruleset.MarkSet{Mask: 1, Value: 1}, TProxy: &ruleset.TProxy{IPv6: true, Port: 5353}, Verdict: accept},
			{Verdict: ruleset.Verdict{Kind: ruleset.VerdictMasquerade}},
			{Matches: []ruleset.Match{{Kind: ruleset.MatchRPFail}}, Verdict: drop},
			{Matches: []ruleset.Match{{Kind: ruleset.MatchIifname, IfPrefix: "weir", Negate: true}, {Kind: ruleset.MatchOifname, IfPrefix: "eth0"}}, Verdict: ruleset.Verdict{Kind: ruleset.VerdictReturn}},
			{Matches: []ruleset.Match{{Kind: ruleset.MatchMark, Mark: 0x800000, Negate: true}, {Kind: ruleset.MatchLookup, Set: "local-pods6", Fields: []ruleset.Field{ruleset.FieldIP6Saddr}, Negate: true}}, Verdict: drop},
			{Matches: []ruleset.Match{{Kind: ruleset.MatchLookup, Set: "ports", ID: 7, Fields: []ruleset.Field{ruleset.FieldL4Proto, ruleset.FieldTHDport}}}, Verdict: jump("x")},
		}}},
	}
}

// TestRuleMessageMatchesLibrary: ruleMessage encodes every rule of a dense
// cluster, of one with ClusterNetworkPolicies, of the batch tests' table
// and of everyRuleKind, built in turn from one exprBuf, byte for byte as
// google/nftables' AddRule does each rule built on its own.
func TestRuleMessageMatchesLibrary(t *testing.T) {
	tiers := synth.Dense
	tiers.ClusterPolicies = 100
	rulesets := map[string]ruleset.Ruleset{
		"dense":   policy.Compile(synth.Cluster(synth.Dense)),
		"tiers":   policy.Compile(synth.Cluster(tiers)),
		"batch":   batchRuleset(),
		"changed": changedRuleset(),
		"kinds":   everyRuleKind(),
	}
	var got []netlink.Message
	enc, err := newEncoder(func(b []netlink.Message) { got = b })
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range rulesets {
		interval := func(name string) bool {
			s, _ := r.Set(name)
			return s.Interval
		}
		// One writer and one exprBuf for the whole ruleset, as the
		// applier's; the messages are compared once all are encoded, with
		// the library's of rules built afresh.
		var w attrWriter
		var b exprBuf
		var gotMsgs, wantMsgs []netlink.Message
		var where []string
		for _, c := range r.Chains {
			kc := &nftables.Chain{Table: weirTable, Name: c.Name}
			for _, rule := range c.Rules {
				m, err := ruleMessage(&w, b.rule(kc, rule, interval))
				if err != nil {
					t.Fatalf("%s: chain %s: %v", name, c.Name, err)
				}
				enc.AddRule(kernelRule(kc, rule, interval))
				if err := enc.Flush(); err != nil || len(got) != 3 {
					t.Fatalf("library batch: %d messages, %v", len(got), err)
				}
				gotMsgs, wantMsgs = append(gotMsgs, m), append(wantMsgs, got[1])
				where = append(where, c.Name+" rule "+rule.Owner.String())
			}
		}
		for i, m := range gotMsgs {
			if want := wantMsgs[i]; m.Header.Type != want.Header.Type || m.Header.Flags != want.Header.Flags || !bytes.Equal(m.Data, want.Data) {
				t.Fatalf("%s: chain %s:\n got %+v %x\nwant %+v %x", name, where[i], m.Header, m.Data, want.Header, want.Data)
			}
		}
		if len(gotMsgs) == 0 {
			t.Errorf("%s: no rules", name)
		}
	}
}

// TestElemsMessageMatchesLibrary: elemsMessage encodes the elements of
// every set of the rulesets of TestRuleMessageMatchesLibrary, of the
// element cap's widest shapes and of a set with timeouts (learned
// elements) byte for byte as google/nftables' SetAddElements and
// SetDeleteElements do.
func TestElemsMessageMatchesLibrary(t *testing.T) {
	var sets []ruleset.Set
	tiers := synth.Dense
	tiers.ClusterPolicies = 100
	for _, r := range []ruleset.Ruleset{policy.Compile(synth.Cluster(synth.Dense)), policy.Compile(synth.Cluster(tiers)), batchRuleset(), changedRuleset()} {
		sets = append(sets, r.Sets...)
	}
	var got []netlink.Message
	enc, err := newEncoder(func(b []netlink.Message) { got = b })
	if err != nil {
		t.Fatal(err)
	}
	var arena attrWriter // shared, as the applier's
	check := func(ks *nftables.Set, els []nftables.SetElement) {
		t.Helper()
		for _, typ := range []uint16{unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM} {
			m, err := elemsMessage(&arena, ks, els, typ)
			if err != nil {
				t.Fatalf("set %s: %v", ks.Name, err)
			}
			op := enc.SetAddElements
			if typ == unix.NFT_MSG_DELSETELEM {
				op = enc.SetDeleteElements
			}
			if err := op(ks, els); err != nil {
				t.Fatal(err)
			}
			if err := enc.Flush(); err != nil || len(got) != 3 {
				t.Fatalf("library batch: %d messages, %v", len(got), err)
			}
			if want := got[1]; m.Header.Type != want.Header.Type || m.Header.Flags != want.Header.Flags || !bytes.Equal(m.Data, want.Data) {
				t.Fatalf("set %s, type %d:\n got %+v %x\nwant %+v %x", ks.Name, typ, m.Header, m.Data, want.Header, want.Data)
			}
		}
	}
	n := 0
	for _, s := range append(sets, capSets...) {
		els := kernelElems(s, s.Elems)
		if len(s.Elems) == 0 {
			els = capElems(s, 10)
		}
		ks := kernelSet(s)
		ks.ID = uint32(n + 1)
		for _, chunk := range chunkElems(els) {
			check(ks, chunk)
			n++
		}
	}
	learned := ruleset.Set{Name: "dns4-X", Key: []ruleset.Type{ruleset.TypeIPv4, ruleset.TypeIPv4}, Timeout: true, Size: 10, Dynamic: true}
	els := kernelElems(learned, []ruleset.Elem{{Key: []ruleset.Range{point("10.0.0.1"), point("1.2.3.4")}}})
	els[0].Timeout = 90 * time.Second
	check(kernelSet(learned), els)
	if n < 50 {
		t.Errorf("%d element messages compared", n)
	}
}

// TestElemBufMatchesFresh: one elemBuf building the kernel elements of
// every set of the dense rulesets in turn, as a full apply does, gives
// each set the elements a fresh kernelElems gives: nothing of the sets
// before (a key, a verdict, an interval end) shows through.
func TestElemBufMatchesFresh(t *testing.T) {
	tiers := synth.Dense
	tiers.ClusterPolicies = 100
	var buf elemBuf
	n := 0
	for _, r := range []ruleset.Ruleset{policy.Compile(synth.Cluster(synth.Dense)), policy.Compile(synth.Cluster(tiers)), batchRuleset(), changedRuleset()} {
		for _, s := range r.Sets {
			if got, want := buf.kernelElems(s, s.Elems), kernelElems(s, s.Elems); !slices.EqualFunc(got, want, sameElem) {
				t.Fatalf("set %s: elements differ from a fresh kernelElems:\n got %v\nwant %v", s.Name, got, want)
			}
			n++
		}
	}
	if n < 100 {
		t.Errorf("%d sets compared", n)
	}
}

func sameElem(a, b nftables.SetElement) bool { return reflect.DeepEqual(a, b) }

// TestArenaChunksGrow pins the chunks of an attrWriter: a small batch gets
// a small first chunk, each further chunk doubles up to arenaChunk, a
// message larger than that gets a chunk of its own size, and the bytes
// written keep their chunk.
func TestArenaChunksGrow(t *testing.T) {
	var w attrWriter
	var caps []int
	var first []byte
	for range 9 {
		w.reserve(100)
		if first == nil {
			w.b = append(w.b, 1)
			first = w.b[:1]
		}
		caps = append(caps, cap(w.b))
		w.b = w.b[:cap(w.b)] // full: the next reserve takes a new chunk
	}
	want := []int{4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 256 << 10, 256 << 10}
	if !slices.Equal(caps, want) {
		t.Errorf("chunk sizes %v, want %v", caps, want)
	}
	if w.reserve(1 << 20); cap(w.b) != 1<<20 {
		t.Errorf("a 1 MiB message got a chunk of %d bytes", cap(w.b))
	}
	if first[0] != 1 {
		t.Error("a new chunk overwrote the bytes of an old one")
	}
}

// TestCounterAndChainMessagesMatchLibrary: counterMessage and chainMessage
// encode every counter and every regular chain of the dense cluster and of
// the batch tests' tables byte for byte as google/nftables' AddObj and
// AddChain do.
func TestCounterAndChainMessagesMatchLibrary(t *testing.T) {
	var got []netlink.Message
	enc, err := newEncoder(func(b []netlink.Message) { got = b })
	if err != nil {
		t.Fatal(err)
	}
	library := func() netlink.Message {
		t.Helper()
		if err := enc.Flush(); err != nil || len(got) != 3 {
			t.Fatalf("library batch: %d messages, %v", len(got), err)
		}
		return got[1]
	}
	var w attrWriter // shared, as the applier's
	var mine, want []netlink.Message
	for _, r := range []ruleset.Ruleset{policy.Compile(synth.Cluster(synth.Dense)), batchRuleset(), changedRuleset()} {
		for _, c := range r.Counters {
			mine = append(mine, counterMessage(&w, c.Name))
			enc.AddObj(kernelCounter(c.Name))
			want = append(want, library())
		}
		for _, c := range r.Chains {
			if c.Base == nil {
				mine = append(mine, chainMessage(&w, c.Name))
				enc.AddChain(kernelChain(c))
				want = append(want, library())
			}
		}
	}
	if len(mine) < 1000 {
		t.Fatalf("%d messages compared", len(mine))
	}
	for i, m := range mine {
		if w := want[i]; m.Header.Type != w.Header.Type || m.Header.Flags != w.Header.Flags || !bytes.Equal(m.Data, w.Data) {
			t.Fatalf("message %d:\n got %+v %x\nwant %+v %x", i, m.Header, m.Data, w.Header, w.Data)
		}
	}
}
