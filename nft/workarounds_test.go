package nft

import (
	"context"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/ruleset"
)

// These tests pin the workarounds of workarounds.go, each against
// google/nftables v0.3.0: that the library still behaves as the workaround
// assumes, and that the workaround does its part.

// TestEncoderHook: the encoder captures the whole batch without a socket;
// google/nftables asks for an acknowledgement of every message and an
// echo of every rule, and the batch weir sends asks for neither but one
// acknowledgement, of its last message.
func TestEncoderHook(t *testing.T) {
	var captured []netlink.Message
	enc, err := newEncoder(func(b []netlink.Message) { captured = b })
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Flush(); err != nil || captured != nil {
		t.Fatalf("empty Flush: %v, captured %d messages; want nothing", err, len(captured))
	}
	enc.AddTable(weirTable)
	c := enc.AddChain(&nftables.Chain{Table: weirTable, Name: "c"})
	enc.AddRule(&nftables.Rule{Table: weirTable, Chain: c, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(captured) != 5 || captured[0].Header.Type != unix.NFNL_MSG_BATCH_BEGIN || captured[4].Header.Type != unix.NFNL_MSG_BATCH_END {
		t.Fatalf("captured %d messages, want begin, table, chain, rule, end", len(captured))
	}
	for i, m := range captured[1:4] {
		if m.Header.Flags&netlink.Acknowledge == 0 {
			t.Errorf("google/nftables no longer asks to acknowledge message %d: the encoder hook may go", i+1)
		}
	}
	if captured[3].Header.Flags&unix.NLM_F_ECHO == 0 {
		t.Error("google/nftables no longer asks to echo rules: the encoder hook may go")
	}
	r := &recorder{}
	if err := sendBatch(context.Background(), r, captured); err != nil {
		t.Fatal(err)
	}
	for i, m := range r.batches[0] {
		ack, echo := m.Header.Flags&netlink.Acknowledge != 0, m.Header.Flags&unix.NLM_F_ECHO != 0
		if echo || ack != (i == 3) {
			t.Errorf("sent message %d asks ack %v, echo %v; want an ack of the last message only", i, ack, echo)
		}
	}
}

// typeofSets are two sets keyed by rule id, with different keys and
// comments, and a map that is not.
var typeofSets = []ruleset.Set{
	{Name: "map4", Key: []ruleset.Type{ruleset.TypeIPv4}, Map: true, Comment: "a map"},
	{Name: "peers4", Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv4}, Comment: "v4 peers"},
	{Name: "ports", Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeProto, ruleset.TypePort}, Interval: true, Comment: "ports"},
}

// TestTypeofUserdataRewrite: google/nftables writes no typeof record, and
// the applier gives each set keyed by rule id that a batch adds the record
// of its own key (with its comment), leaves the other sets as the library
// wrote them, and carries nothing over to the next batch.
func TestTypeofUserdataRewrite(t *testing.T) {
	var captured []netlink.Message
	enc, err := newEncoder(func(b []netlink.Message) { captured = b })
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.AddSet(kernelSet(typeofSets[1]), nil); err != nil {
		t.Fatal(err)
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	if ud := attributes(t, captured[1])[unix.NFTA_SET_USERDATA]; userdata.Get(ud, userdata.NFTNL_UDATA_SET_KEY_TYPEOF) != nil {
		t.Error("google/nftables writes a typeof record now: the NEWSET rewrite may go")
	}

	r := &recorder{}
	a := recordingApplier(t, r)
	if err := a.ApplyFull(context.Background(), ruleset.Ruleset{Sets: typeofSets}); err != nil {
		t.Fatal(err)
	}
	byName := map[string][]byte{}
	for _, m := range r.batches[0] {
		if m.Header.Type&0xff == unix.NFT_MSG_NEWSET {
			attrs := attributes(t, m)
			byName[str(attrs[unix.NFTA_SET_NAME])] = attrs[unix.NFTA_SET_USERDATA]
		}
	}
	for _, s := range typeofSets {
		ud := byName[s.Name]
		if c, _ := userdata.GetString(ud, userdata.NFTNL_UDATA_SET_COMMENT); c != s.Comment {
			t.Errorf("set %s: comment %q, want %q", s.Name, c, s.Comment)
		}
		typeof := userdata.Get(ud, userdata.NFTNL_UDATA_SET_KEY_TYPEOF)
		switch {
		case s.Key[0] != ruleset.TypeID && typeof != nil:
			t.Errorf("set %s is not keyed by rule id but got a typeof record", s.Name)
		case s.Key[0] == ruleset.TypeID && !slices.Equal(ud, typeofUserdata(s)):
			t.Errorf("set %s: user data %x, want its own typeof %x", s.Name, ud, typeofUserdata(s))
		}
	}
	if a.typeofs != nil {
		t.Errorf("typeof records outlive their batch: %v", a.typeofs)
	}
}

// longChain is a chain name as long as a selection chain's can be
// (sel-in-HASH- and a namespace of 63 characters).
var longChain = "sel-in-01234567-" + strings.Repeat("n", 63)

// capSets are weir's widest set shapes, and a verdict map of long chain
// names, where the byte bound splits before the count bound.
var capSets = []ruleset.Set{
	{Name: "blocks6", Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv6}, Interval: true},
	{Name: "named6", Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv6, ruleset.TypeProto, ruleset.TypePort}},
	{Name: "pods6", Key: []ruleset.Type{ruleset.TypeIPv6}, Interval: true},
	{Name: "ingress-pods6", Key: []ruleset.Type{ruleset.TypeIPv6}, Map: true},
}

// capElems fills s with n elements of distinct IPv6 addresses.
func capElems(s ruleset.Set, n int) []nftables.SetElement {
	for i := range n {
		a := netip.AddrFrom16([16]byte{0: 0xfd, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		ip := ruleset.Range{From: string(a.AsSlice()), To: string(a.AsSlice())}
		e := ruleset.Elem{Key: []ruleset.Range{ip}}
		switch len(s.Key) {
		case 2:
			e.Key = []ruleset.Range{ruleID(7), ip}
		case 4:
			e.Key = []ruleset.Range{ruleID(7), ip, {From: "\x06", To: "\x06"}, {From: ruleset.PortBytes(80), To: ruleset.PortBytes(90)}}
		}
		if s.Map {
			e.Verdict = jumpTo(longChain)
		}
		s.Elems = append(s.Elems, e)
	}
	return kernelElems(s, s.Elems)
}

// elemListBytes is the length of the element list of a set-elements
// message, and how many elements it holds; an error when the list does
// not decode.
func elemListBytes(m netlink.Message) (int, int, error) {
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return 0, 0, err
	}
	for _, a := range attrs {
		if a.Type&^unix.NLA_F_NESTED == unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			inner, err := netlink.UnmarshalAttributes(a.Data)
			return len(a.Data), len(inner), err
		}
	}
	return 0, 0, nil
}

// TestElementCapIsNeeded: google/nftables encodes 5,000 IPv4 elements
// (80 KB) in one message that no longer decodes whole.
func TestElementCapIsNeeded(t *testing.T) {
	var captured []netlink.Message
	enc, err := newEncoder(func(b []netlink.Message) { captured = b })
	if err != nil {
		t.Fatal(err)
	}
	v4 := ruleset.Set{Name: "v4", Key: []ruleset.Type{ruleset.TypeIPv4}}
	for i := range 5000 {
		v4.Elems = append(v4.Elems, ruleset.Elem{Key: []ruleset.Range{point(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String())}})
	}
	if err := enc.SetAddElements(kernelSet(v4), kernelElems(v4, v4.Elems)); err != nil {
		t.Fatal(err)
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, n, err := elemListBytes(captured[1]); err == nil && n == 5000 {
		t.Error("google/nftables encodes 5,000 elements in one message whole now: the element cap may go")
	}
}

// TestElementCap: the applier's messages, for weir's widest set shapes,
// each hold at most maxElemsPerMessage elements, decode whole, and are as
// long as elemSize says.
func TestElementCap(t *testing.T) {
	for _, s := range capSets {
		els := capElems(s, 2*maxElemsPerMessage+1)
		a := recordingApplier(t, &recorder{})
		if err := a.sendElems(kernelSet(s), els, unix.NFT_MSG_NEWSETELEM); err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, m := range a.msgs {
			size, n, err := elemListBytes(m)
			if err != nil || n > maxElemsPerMessage || size > maxElemListBytes {
				t.Errorf("set %s: a message of %d elements, %d bytes (%v)", s.Name, n, size, err)
			}
			want := 0
			for _, e := range els[total : total+n] {
				want += elemSize(e)
			}
			if size != want {
				t.Errorf("set %s: %d elements encode to %d bytes, elemSize says %d", s.Name, n, size, want)
			}
			total += n
		}
		if total != len(els) {
			t.Errorf("set %s: messages decode to %d elements, want %d", s.Name, total, len(els))
		}
		if s.Map && len(a.msgs) <= 3 {
			t.Errorf("set %s: %d messages; the long chain names should split it by bytes", s.Name, len(a.msgs))
		}
	}
}

// TestChunkElemsKeepsIntervalsWhole: no message starts with the end of an
// interval whose start is in the message before.
func TestChunkElemsKeepsIntervalsWhole(t *testing.T) {
	// A lone start (a range to the last address has no end), then pairs:
	// element maxElemsPerMessage is an end.
	els := []nftables.SetElement{{Key: []byte{0}}}
	for i := range 2 * maxElemsPerMessage {
		els = append(els, nftables.SetElement{Key: []byte{byte(i)}, IntervalEnd: i%2 == 1})
	}
	chunks := chunkElems(els)
	var joined []nftables.SetElement
	for i, c := range chunks {
		if len(c) == 0 || len(c) > maxElemsPerMessage || c[0].IntervalEnd {
			t.Errorf("chunk %d: %d elements, starting with an interval end: %v", i, len(c), len(c) > 0 && c[0].IntervalEnd)
		}
		joined = append(joined, c...)
	}
	if len(chunks[0]) != maxElemsPerMessage-1 || len(joined) != len(els) {
		t.Errorf("chunks of %d, %d elements in all; want the first one short by the split pair and all %d", len(chunks[0]), len(joined), len(els))
	}
}

// TestQuerySocketIsHandedOver: the socket option hook hands the lasting
// connection's socket over, so that queries can be given a deadline.
func TestQuerySocketIsHandedOver(t *testing.T) {
	conn, sock, err := openQuery(nftables.WithTestDial(func([]netlink.Message) ([]netlink.Message, error) {
		return nil, io.EOF
	}))
	if err != nil {
		t.Fatalf("google/nftables no longer runs socket options on the lasting connection: %v", err)
	}
	defer conn.CloseLasting()
	if sock == nil {
		t.Fatal("no socket handed over")
	}
}
