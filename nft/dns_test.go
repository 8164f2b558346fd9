package nft

import (
	"context"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
)

// dnsBatchRuleset is a table with what domainNames bring: a Dynamic set
// with timeouts and a size, the local pods whose DNS queries go to the
// proxy, a prerouting chain handing them to it (tproxy) or dropping them,
// and the rule accepting what the proxy learned.
func dnsBatchRuleset(pods ...string) ruleset.Ruleset {
	podSet := ruleset.Set{Name: "dns-pods4", Key: []ruleset.Type{ruleset.TypeIPv4}}
	for _, p := range pods {
		podSet.Elems = append(podSet.Elems, ruleset.Elem{Key: []ruleset.Range{point(p)}})
	}
	udp53 := ruleset.Match{Kind: ruleset.MatchPort, Proto: ruleset.ProtoUDP, PortFrom: 53, PortTo: 53}
	fromPods := lookup("dns-pods4", 0, ruleset.FieldIPSaddr)
	return ruleset.Ruleset{
		Counters: []ruleset.Counter{{Name: "dns-proxy-down", OwnerRef: &ruleset.Owner{Kind: ruleset.OwnerDNSProxyDown}}},
		Sets: []ruleset.Set{
			podSet,
			{Name: "dns4-X", Key: []ruleset.Type{ruleset.TypeIPv4, ruleset.TypeIPv4}, Timeout: true, Size: 4096, Dynamic: true},
		},
		Chains: []ruleset.Chain{
			{Name: "dns-steer", Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookPrerouting, Priority: ruleset.PriorityDstNAT + 20}, Rules: []ruleset.Rule{
				{Matches: []ruleset.Match{udp53, fromPods}, Mark: &ruleset.MarkSet{Mask: 0x400000, Value: 0x400000},
					TProxy: &ruleset.TProxy{Port: 15353}, Verdict: accept},
				{Matches: []ruleset.Match{udp53, fromPods}, Counter: "dns-proxy-down", Verdict: drop},
			}},
			{Name: "pol", Rules: []ruleset.Rule{
				{Matches: []ruleset.Match{{Kind: ruleset.MatchLookup, Set: "dns4-X", Fields: []ruleset.Field{ruleset.FieldIPSaddr, ruleset.FieldIPDaddr}}}, Verdict: accept},
			}},
		},
	}
}

// TestDynamicSetBatches pins the batches of a ruleset with a Dynamic set:
// a full apply declares its timeouts and size and adds again the elements
// the kernel held, each with the time it had left (one about to expire
// left out); a change never touches its elements.
func TestDynamicSetBatches(t *testing.T) {
	key := func(pod, addr string) []byte {
		return append(netip.MustParseAddr(pod).AsSlice(), netip.MustParseAddr(addr).AsSlice()...)
	}
	held := []nftables.SetElement{
		{Key: key("10.0.0.1", "1.2.3.4"), Timeout: time.Minute, Expires: 42 * time.Second},
		{Key: key("10.0.0.1", "1.2.3.5"), Timeout: time.Minute},
		{Key: key("10.0.0.2", "1.2.3.4")},
	}
	r := &recorder{}
	a := recordingApplier(t, r)
	reads := 0
	a.learned = func(_ context.Context, dynamic []ruleset.Set) (map[string][]nftables.SetElement, error) {
		reads++
		if len(dynamic) != 1 || dynamic[0].Name != "dns4-X" {
			t.Errorf("read the elements of %v, want dns4-X only", dynamic)
		}
		return map[string][]nftables.SetElement{"dns4-X": carried(held, dynamic[0].Size)}, nil
	}
	ctx := context.Background()
	if _, err := a.Apply(ctx, dnsBatchRuleset("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, dnsBatchRuleset("10.0.0.1", "10.0.0.2")); err != nil {
		t.Fatal(err)
	}
	textdiff.Golden(t, filepath.Join("testdata", "batches", "dynamic.txt"), describeBatches(t, r, 0), *update)
	if reads != 1 {
		t.Errorf("read the learned elements %d times, want once (the full apply)", reads)
	}
}

// TestApplyChangesLeavesDynamicElements pins that changes naming elements
// of a Dynamic set (Diff makes none) send nothing for them.
func TestApplyChangesLeavesDynamicElements(t *testing.T) {
	r := &recorder{}
	a := recordingApplier(t, r)
	rs := dnsBatchRuleset("10.0.0.1")
	learned := ruleset.Elem{Key: []ruleset.Range{point("10.0.0.1"), point("1.2.3.4")}}
	ch := ruleset.Changes{AddElems: []ruleset.SetElems{{Set: "dns4-X", Elems: []ruleset.Elem{learned}}},
		DelElems: []ruleset.SetElems{{Set: "dns4-X", Elems: []ruleset.Elem{learned}}}}
	if err := a.ApplyChanges(context.Background(), rs, ch); err != nil {
		t.Fatal(err)
	}
	if len(r.batches) != 0 {
		t.Errorf("sent %s", describeBatches(t, r, 0))
	}
}

// TestCarriedKeepsTheLongestLived pins which held elements a full apply
// adds again to a set of a smaller size: those with the most time left.
func TestCarriedKeepsTheLongestLived(t *testing.T) {
	held := []nftables.SetElement{
		{Key: []byte{1}, Timeout: time.Minute, Expires: 10 * time.Second},
		{Key: []byte{2}, Timeout: time.Minute, Expires: 50 * time.Second},
		{Key: []byte{3}},
		{Key: []byte{4}, Timeout: time.Minute, Expires: 30 * time.Second},
	}
	got := carried(held, 2)
	want := []nftables.SetElement{{Key: []byte{3}}, {Key: []byte{2}, Timeout: 50 * time.Second}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("carried = %+v, want %+v", got, want)
	}
}

// TestTProxyExprs pins the bytecode of the tproxy statement to what nft
// generates for `tproxy ip to :15353` (nft --debug=netlink):
// `[ immediate reg 1 0x0000f93b ] [ tproxy ip port reg 1 ]`.
func TestTProxyExprs(t *testing.T) {
	for _, tc := range []struct {
		tp     ruleset.TProxy
		family byte
	}{{ruleset.TProxy{Port: 15353}, unix.NFPROTO_IPV4}, {ruleset.TProxy{IPv6: true, Port: 15353}, unix.NFPROTO_IPV6}} {
		want := []expr.Any{
			&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(15353)},
			&expr.TProxy{Family: tc.family, TableFamily: unix.NFPROTO_INET, RegPort: 1},
		}
		if got := tproxyExprs(tc.tp); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %#v, want %#v", tc.tp, got, want)
		}
	}
}
