//go:build integration

package nft

import (
	"context"
	"errors"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
)

// dnsKernelRuleset is dnsBatchRuleset with an IPv6 Dynamic set, both
// families' tproxy rules and the input chain's accept of what they mark:
// every new object in one table.
func dnsKernelRuleset(size uint32) ruleset.Ruleset {
	r := dnsBatchRuleset("10.0.0.1")
	r.Sets[1].Size = size
	tcp53 := ruleset.Match{Kind: ruleset.MatchPort, Proto: ruleset.ProtoTCP, PortFrom: 53, PortTo: 53}
	r.Sets = append(r.Sets,
		ruleset.Set{Name: "dns6-X", Key: []ruleset.Type{ruleset.TypeIPv6, ruleset.TypeIPv6}, Timeout: true, Size: size, Dynamic: true,
			Comment: "learned addresses"},
		ruleset.Set{Name: "dns-pods6", Key: []ruleset.Type{ruleset.TypeIPv6}})
	r.Chains[0].Rules = append(r.Chains[0].Rules, ruleset.Rule{
		Matches: []ruleset.Match{tcp53, lookup("dns-pods6", 0, ruleset.FieldIP6Saddr)},
		Mark:    &ruleset.MarkSet{Mask: 0x400000, Value: 0x400000}, TProxy: &ruleset.TProxy{IPv6: true, Port: 15353},
		Verdict: accept, Owner: ruleset.Owner{Kind: ruleset.OwnerDNSProxy}})
	r.Chains = append(r.Chains, ruleset.Chain{Name: "input", Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookInput},
		Rules: []ruleset.Rule{{Matches: []ruleset.Match{{Kind: ruleset.MatchMark, Mark: 0x400000}}, Verdict: accept}}})
	slices.SortFunc(r.Sets, func(a, b ruleset.Set) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(r.Chains, func(a, b ruleset.Chain) int { return strings.Compare(a.Name, b.Name) })
	return r
}

// testApplier is an applier of a fresh namespace, closed when the test
// ends.
func testApplier(t *testing.T) (*testkit.NS, *NetlinkApplier) {
	t.Helper()
	ns := testkit.NewTestNS(t, "weirt-nft-")
	a, err := NewNetlinkApplier(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return ns, a
}

// applyAndLearn applies r whole through a and opens a Learner, closed
// when the test ends.
func applyAndLearn(t *testing.T, a *NetlinkApplier, r ruleset.Ruleset) *Learner {
	t.Helper()
	if err := a.ApplyFull(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	l, err := a.NewLearner()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// listing is `nft list table inet weir`, normalized.
func listing(t *testing.T, ns *testkit.NS) string {
	t.Helper()
	return testkit.NormalizeNft(testkit.Nft(t, ns, "", "list", "table", "inet", ruleset.TableName))
}

var elementsLine = regexp.MustCompile(`\n\t\telements = \{[^\n]* timeout [^\n]*\}`) // of a Dynamic set

// TestLearnerAndFullApply applies a ruleset with Dynamic sets, learns
// elements through a Learner, and checks with nft that the kernel lists
// what the ruleset renders (elements aside), that a learn gives an element
// there its new timeout, that a full apply keeps the learned elements with
// the time they had left, and that an element expires.
func TestLearnerAndFullApply(t *testing.T) {
	ns, a := testApplier(t)
	r := dnsKernelRuleset(4096)
	ctx := context.Background()
	if _, err := a.Apply(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got, want := listing(t, ns), testkit.NormalizeNft(r.String()); got != want {
		t.Fatalf("kernel listing differs from rendered text:\n%s", textdiff.Lines(want, got))
	}
	l, err := a.NewLearner()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pod, pod6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")
	short, long, v6 := netip.MustParseAddr("1.2.3.4"), netip.MustParseAddr("1.2.3.5"), netip.MustParseAddr("2001:db8::5")
	for _, learn := range []struct {
		set       string
		pod, addr netip.Addr
		ttl       time.Duration
	}{{"dns4-X", pod, short, time.Hour}, {"dns4-X", pod, short, 2 * time.Second}, {"dns4-X", pod, long, time.Minute}, {"dns6-X", pod6, v6, time.Minute}} {
		if err := l.Learn(learn.set, learn.pod, learn.addr, learn.ttl); err != nil {
			t.Fatalf("learn %v: %v", learn, err)
		}
	}
	text := testkit.Nft(t, ns, "", "list", "set", "inet", ruleset.TableName, "dns4-X")
	if !strings.Contains(text, "10.0.0.1 . 1.2.3.4 timeout 2s expires") {
		t.Errorf("a second learn did not give the element its timeout:\n%s", text)
	}
	if got, want := elementsLine.ReplaceAllString(listing(t, ns), ""), testkit.NormalizeNft(r.String()); got != want {
		t.Errorf("kernel listing differs from rendered text (elements aside):\n%s", textdiff.Lines(want, got))
	}
	time.Sleep(time.Second)
	if err := a.ApplyFull(ctx, r); err != nil {
		t.Fatal(err)
	}
	left := regexp.MustCompile(`10\.0\.0\.1 \. 1\.2\.3\.5 timeout (\d+)s\d*m?s? expires`)
	text = testkit.Nft(t, ns, "", "list", "set", "inet", ruleset.TableName, "dns4-X")
	n := 0
	if m := left.FindStringSubmatch(text); m != nil {
		n, _ = strconv.Atoi(m[1])
	}
	if n < 50 || n > 59 {
		t.Errorf("after a full apply, the 60 s element is not there with the time it had left:\n%s", text)
	}
	if !strings.Contains(testkit.Nft(t, ns, "", "list", "set", "inet", ruleset.TableName, "dns6-X"), "fd00::1 . 2001:db8::5 timeout") {
		t.Error("after a full apply, the IPv6 element is gone")
	}
	time.Sleep(1500 * time.Millisecond)
	text = testkit.Nft(t, ns, "", "list", "set", "inet", ruleset.TableName, "dns4-X")
	if strings.Contains(text, "1.2.3.4") || !strings.Contains(text, "1.2.3.5") {
		t.Errorf("after 2.5 s, want the 2 s element expired and the 60 s one there:\n%s", text)
	}
	if err := l.Forget("dns4-X", pod, []netip.Addr{short, long}); err != nil {
		t.Fatalf("forget an expired and a present element: %v", err)
	}
	if text = testkit.Nft(t, ns, "", "list", "set", "inet", ruleset.TableName, "dns4-X"); strings.Contains(text, "1.2.3.5") {
		t.Errorf("forgotten element still there:\n%s", text)
	}
}

// TestLearnerSetFull fills a set of size 4 and pins the error of one more
// learn (ErrSetFull: the kernel answers ENFILE), that a learn of an
// element already there still refreshes it, and that a forgotten element
// makes room.
func TestLearnerSetFull(t *testing.T) {
	_, a := testApplier(t)
	l := applyAndLearn(t, a, dnsKernelRuleset(4))
	pod := netip.MustParseAddr("10.0.0.1")
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{1, 2, 3, byte(i)}) }
	for i := range 4 {
		if err := l.Learn("dns4-X", pod, addr(i), time.Minute); err != nil {
			t.Fatalf("learn %d of 4: %v", i+1, err)
		}
	}
	if err := l.Learn("dns4-X", pod, addr(4), time.Minute); !errors.Is(err, ErrSetFull) {
		t.Fatalf("learn into a full set: %v, want ErrSetFull", err)
	}
	if err := l.Learn("dns4-X", pod, addr(0), time.Hour); err != nil {
		t.Errorf("learn of an element already there, set full: %v", err)
	}
	if err := l.Forget("dns4-X", pod, []netip.Addr{addr(1)}); err != nil {
		t.Fatal(err)
	}
	if err := l.Learn("dns4-X", pod, addr(4), time.Minute); err != nil {
		t.Errorf("learn after a forget made room: %v", err)
	}
	if err := l.Learn("no-such-set", pod, addr(4), time.Minute); err == nil || errors.Is(err, ErrSetFull) {
		t.Errorf("learn into a missing set: %v, want an error other than ErrSetFull", err)
	}
	if err := l.Forget("no-such-set", pod, []netip.Addr{addr(4)}); err != nil {
		t.Errorf("forget in a missing set: %v, want none", err)
	}
	if err := l.Learn("dns4-X", pod, netip.MustParseAddr("::1"), time.Minute); err == nil {
		t.Error("learn of a pair of two families succeeded")
	}
}

// TestLearnsSurviveConcurrentFullApplies learns from several goroutines
// while full applies replace the table, and checks that every learned
// element is there at the end: a learn waits for a full apply in flight,
// which carries over what was learned before it.
func TestLearnsSurviveConcurrentFullApplies(t *testing.T) {
	_, a := testApplier(t)
	r := dnsKernelRuleset(4096)
	ctx := context.Background()
	l := applyAndLearn(t, a, r)
	pod := netip.MustParseAddr("10.0.0.1")
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				errs <- l.Learn("dns4-X", pod, netip.AddrFrom4([4]byte{1, 2, byte(w), byte(i)}), time.Minute)
			}
		})
	}
	for range 5 {
		if err := a.ApplyFull(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := a.ApplyFull(ctx, r); err != nil {
		t.Fatal(err)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(a.fd))
	if err != nil {
		t.Fatal(err)
	}
	set, err := conn.GetSetByName(weirTable, "dns4-X")
	if err != nil {
		t.Fatal(err)
	}
	if els, err := conn.GetSetElements(set); err != nil || len(els) != workers*each {
		t.Errorf("%d elements after concurrent learns and full applies (%v), want %d", len(els), err, workers*each)
	}
}
