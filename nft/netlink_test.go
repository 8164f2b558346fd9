//go:build integration

package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// scenarios are the compiler's golden scenarios: snapshots covering every
// part of the NetworkPolicy API.
const scenarios = "../policy/testdata/compile/*.yaml"

// loadScenario reads one scenario (its trace cases are the compiler's
// tests).
var loadScenario = fixtures.LoadScenario[policy.Snapshot]

// TestRoundTrip applies every scenario's ruleset through netlink in a fresh
// namespace and checks that `nft list table inet weir` prints the rendered
// text. Scenarios are applied one after another through one applier, so all
// but the first go through Diff and the incremental path; a final full apply
// of each is checked too. The rendered text is also loaded with `nft -f` into
// a second namespace to prove it is valid nft input that lists the same.
func TestRoundTrip(t *testing.T) {
	ns, textNs := testkit.NewTestNS(t, "weirt-nft-"), testkit.NewTestNS(t, "weirt-nft-")
	a, err := NewNetlinkApplier(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	files, _ := filepath.Glob(scenarios)
	if len(files) == 0 {
		t.Fatal("no scenarios")
	}
	for _, incremental := range []bool{true, false} {
		for _, file := range files {
			name := fmt.Sprintf("%s/incremental=%v", strings.TrimSuffix(filepath.Base(file), ".yaml"), incremental)
			t.Run(name, func(t *testing.T) {
				r := policy.Compile(loadScenario(t, file).Snapshot)
				if incremental {
					_, err = a.Apply(context.Background(), r)
				} else {
					err = a.ApplyFull(context.Background(), r)
				}
				if err != nil {
					t.Fatalf("apply: %v", err)
				}
				want := testkit.NormalizeNft(r.String())
				got := testkit.NormalizeNft(testkit.Nft(t, ns, "", "list", "table", "inet", ruleset.TableName))
				if got != want {
					t.Errorf("kernel listing differs from rendered text:\n%s", textdiff.Lines(want, got))
				}
				if incremental {
					return
				}
				testkit.Nft(t, textNs, "table inet weir\ndelete table inet weir\n"+r.String(), "-f", "-")
				if got := testkit.NormalizeNft(testkit.Nft(t, textNs, "", "list", "table", "inet", ruleset.TableName)); got != want {
					t.Errorf("nft -f of rendered text lists differently:\n%s", textdiff.Lines(want, got))
				}
			})
		}
	}
}

// TestDiffIsSmall pins that pod churn only changes elements and a policy
// change only touches that policy's objects, and that the kernel follows.
func TestDiffIsSmall(t *testing.T) {
	ns := testkit.NewTestNS(t, "weirt-nft-")
	a, err := NewNetlinkApplier(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	base := loadScenario(t, filepath.Join(filepath.Dir(scenarios), "talk-policies.yaml")).Snapshot
	if _, err := a.Apply(context.Background(), policy.Compile(base)); err != nil {
		t.Fatal(err)
	}
	newPod := base
	newPod.Pods = append(append([]policy.Pod(nil), base.Pods...), policy.Pod{Namespace: "prod", Name: "late", Node: "n2", IPs: []netip.Addr{netip.MustParseAddr("10.0.1.21")}})
	ch := ruleset.Diff(policy.Compile(base), policy.Compile(newPod))
	if len(ch.AddSets)+len(ch.DelSets)+len(ch.AddChains)+len(ch.ReplaceChains)+len(ch.DelChains) != 0 || len(ch.AddElems) == 0 {
		t.Errorf("a new remote pod should change elements only, got %s", ch)
	}
	if _, err := a.Apply(context.Background(), policy.Compile(newPod)); err != nil {
		t.Fatal(err)
	}
	if got, want := testkit.NormalizeNft(testkit.Nft(t, ns, "", "list", "table", "inet", ruleset.TableName)), testkit.NormalizeNft(policy.Compile(newPod).String()); got != want {
		t.Errorf("after pod add:\n%s", textdiff.Lines(want, got))
	}
}

// TestLargeSetReadBack writes 10,000-element sets in one batch and reads them
// back: google/nftables silently truncates oversized element messages. It
// covers a hash set (self4), an interval set whose start and end elements
// must stay paired across chunks (the peers of a rule allowing every pod)
// and a verdict map (ingress-pods4).
func TestLargeSetReadBack(t *testing.T) {
	path := testkit.NewTestNS(t, "weirt-nft-").Path()
	a, err := NewNetlinkApplier(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var pods []policy.Pod
	for i := 0; i < 10000; i++ {
		// Every other address, so no two /32 intervals touch.
		ip := netip.AddrFrom4([4]byte{10, 1, byte(i >> 7), byte(i << 1)})
		pods = append(pods, policy.Pod{Namespace: "default", Name: fmt.Sprint("p", i), Node: "n1", IPs: []netip.Addr{ip}})
	}
	var snap policy.Snapshot
	snap.Node.Name = "n1"
	snap.Pods = pods
	if err := yaml.Unmarshal([]byte(`[{metadata: {namespace: default, name: all}, spec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}}]`), &snap.Policies); err != nil {
		t.Fatal(err)
	}
	r := policy.Compile(snap)
	if _, err := a.Apply(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(a.fd))
	if err != nil {
		t.Fatal(err)
	}
	// The peers' group lives in one shard of peers4 (peers4 or peers4-N).
	peers := "peers4"
	for _, s := range r.Sets {
		if strings.HasPrefix(s.Name, "peers4") && len(s.Elems) > 0 {
			peers = s.Name
		}
	}
	for _, name := range []string{"self4", "ingress-pods4", peers} {
		s, ok := r.Set(name)
		if !ok || len(s.Elems) != 10000 {
			t.Fatalf("set %s: compiled %d elements, want 10000", name, len(s.Elems))
		}
		want := len(kernelElems(s, s.Elems))
		set, err := conn.GetSetByName(weirTable, name)
		if err != nil {
			t.Fatal(err)
		}
		elems, err := conn.GetSetElements(set)
		if err != nil {
			t.Fatal(err)
		}
		if len(elems) != want {
			t.Errorf("set %s holds %d kernel elements, want %d", name, len(elems), want)
		}
	}
}

// TestHashSetFullToItsSize pins that a shared hash set declared with as
// many elements as its size (the last count of a size class) loads, and
// that one element more, a new class, goes through Diff's full apply: the
// kernel refuses elements beyond a hash set's size.
func TestHashSetFullToItsSize(t *testing.T) {
	ns := testkit.NewTestNS(t, "weirt-nft-")
	a, err := NewNetlinkApplier(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	snap := policy.Snapshot{Node: policy.Node{Name: "n1"}}
	if err := yaml.Unmarshal([]byte(`[{metadata: {namespace: default, name: all}, spec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}}]`), &snap.Policies); err != nil {
		t.Fatal(err)
	}
	var prev ruleset.Ruleset
	for _, n := range []int{1024, 1025, 1024} {
		// One local pod, so that the policy is rendered; the others remote.
		snap.Pods = []policy.Pod{{Namespace: "default", Name: "local", Node: "n1", IPs: []netip.Addr{netip.MustParseAddr("10.2.0.1")}}}
		for i := range n - 1 {
			ip := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
			snap.Pods = append(snap.Pods, policy.Pod{Namespace: "default", Name: fmt.Sprint("p", i), Node: "n2", IPs: []netip.Addr{ip}})
		}
		r := policy.Compile(snap)
		var s ruleset.Set // the shard of peers4 holding the one group
		for _, set := range r.Sets {
			if strings.HasPrefix(set.Name, "peers4") && len(set.Elems) > 0 {
				s = set
			}
		}
		if len(s.Elems) != n || s.Size < uint32(n) || s.Size >= uint32(2*n) {
			t.Fatalf("%d peers: shard %q of peers4 has %d elements, size %d; want %d in the power of two at least that", n, s.Name, len(s.Elems), s.Size, n)
		}
		// Apply falls back to a full apply when the kernel refuses changes:
		// Diff itself must call for it at each new class.
		if ch := ruleset.Diff(prev, r); prev.Sets != nil && !ch.Full {
			t.Fatalf("%d peers: Diff from the previous class is not a full apply", n)
		}
		prev = r
		if _, err := a.Apply(context.Background(), r); err != nil {
			t.Fatalf("%d peers: %v", n, err)
		}
		if got, want := testkit.NormalizeNft(testkit.Nft(t, ns, "", "list", "set", "inet", ruleset.TableName, s.Name)), s.Size; !strings.Contains(got, fmt.Sprintf("size %d\n", want)) {
			t.Errorf("%d peers: kernel lists\n%.300s\nwant size %d", n, got, want)
		}
	}
}

// TestRejectedBatch pins how the applier reports a batch the kernel refuses
// (it asks for one acknowledgement per batch, see sendBatch): the error
// names the failing message, the table keeps its previous content, and the
// replies the kernel still sends after the error do not confuse the next
// batch.
func TestRejectedBatch(t *testing.T) {
	ns := testkit.NewTestNS(t, "weirt-nft-")
	a, err := NewNetlinkApplier(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	accept := ruleset.Rule{Verdict: ruleset.Verdict{Kind: ruleset.VerdictAccept}}
	missing := ruleset.Rule{Matches: []ruleset.Match{{Kind: ruleset.MatchLookup, Fields: []ruleset.Field{ruleset.FieldIPDaddr}, Set: "missing"}}, Verdict: ruleset.Verdict{Kind: ruleset.VerdictAccept}}
	jump := func(to string) ruleset.Rule {
		return ruleset.Rule{Verdict: ruleset.Verdict{Kind: ruleset.VerdictJump, Chain: to}}
	}
	apply := func(r ruleset.Ruleset) func() error {
		return func() error { return a.ApplyFull(context.Background(), r) }
	}
	good := func(n int) ruleset.Ruleset {
		return ruleset.Ruleset{Chains: []ruleset.Chain{{Name: fmt.Sprint("good", n), Rules: []ruleset.Rule{accept}}}}
	}
	for i, tc := range []struct {
		name    string
		apply   func() error
		want    error
		message string
	}{
		{"last message fails", apply(ruleset.Ruleset{Chains: []ruleset.Chain{{Name: "a", Rules: []ruleset.Rule{accept, missing}}}}), unix.ENOENT, "add rule"},
		{"middle message fails", apply(ruleset.Ruleset{Chains: []ruleset.Chain{{Name: "a", Rules: []ruleset.Rule{missing, accept, accept}}}}), unix.ENOENT, "add rule"},
		{"jump loop", apply(ruleset.Ruleset{Chains: []ruleset.Chain{
			{Name: "a", Base: &ruleset.Base{Type: "filter", Hook: ruleset.HookForward}, Rules: []ruleset.Rule{jump("b")}},
			{Name: "b", Rules: []ruleset.Rule{jump("c")}},
			{Name: "c", Rules: []ruleset.Rule{jump("b"), accept}},
		}}), unix.EMLINK, "add rule"},
		{"batch refused", func() error {
			// A batch for a subsystem that does not exist: the kernel
			// answers its begin message and ignores the rest.
			a.enc.AddTable(weirTable)
			a.enc.AddChain(&nftables.Chain{Table: weirTable, Name: "x"})
			a.batch = nil
			if err := a.enc.Flush(); err != nil {
				return err
			}
			b := a.batch
			b[0].Data = []byte{0, 0, 0, 0xff}
			return sendBatch(context.Background(), a.send, b)
		}, unix.EINVAL, "batch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := good(i)
			if err := a.ApplyFull(context.Background(), before); err != nil {
				t.Fatalf("apply good ruleset: %v", err)
			}
			err := tc.apply()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("apply bad ruleset: got %v, want %v in %q", err, tc.want, tc.message)
			}
			want := testkit.NormalizeNft(before.String())
			if got := testkit.NormalizeNft(testkit.Nft(t, ns, "", "list", "table", "inet", ruleset.TableName)); got != want {
				t.Errorf("rejected batch changed the table:\n%s", textdiff.Lines(want, got))
			}
			after := good(i + 100)
			if err := a.ApplyFull(context.Background(), after); err != nil {
				t.Fatalf("apply after a rejected batch: %v", err)
			}
			want = testkit.NormalizeNft(after.String())
			if got := testkit.NormalizeNft(testkit.Nft(t, ns, "", "list", "table", "inet", ruleset.TableName)); got != want {
				t.Errorf("table after a rejected batch:\n%s", textdiff.Lines(want, got))
			}
		})
	}
}

// TestShardComesAndGoes: a policy whose ipBlock group lands in a shard of
// blocks4 that holds no group yet adds that set with its rules in one
// incremental transaction, and deleting the policy deletes the set after
// its rules; the kernel lists what the ruleset renders at each step.
// ApplyChanges is called itself: Apply would hide a rejected change
// behind its full fallback.
func TestShardComesAndGoes(t *testing.T) {
	ns, a := testApplier(t)
	base := loadScenario(t, filepath.Join(filepath.Dir(scenarios), "ipblock-except.yaml")).Snapshot
	r0 := policy.Compile(base)
	if err := a.ApplyFull(context.Background(), r0); err != nil {
		t.Fatal(err)
	}
	var with ruleset.Ruleset
	var added string
	for i := range 64 { // a CIDR whose group opens a shard
		s := base
		p := s.Policies[0].DeepCopy()
		p.Name = "late"
		p.Spec.Ingress[0].From = p.Spec.Ingress[0].From[:1]
		p.Spec.Ingress[0].From[0].IPBlock.CIDR, p.Spec.Ingress[0].From[0].IPBlock.Except = fmt.Sprintf("198.18.%d.0/24", i), nil
		s.Policies = append(s.Policies[:1:1], p)
		with = policy.Compile(s)
		if ch := ruleset.Diff(r0, with); len(ch.AddSets) == 1 && strings.HasPrefix(ch.AddSets[0].Name, "blocks4-") {
			added = ch.AddSets[0].Name
			break
		}
	}
	if added == "" {
		t.Fatal("no CIDR opened a shard")
	}
	for _, step := range []struct {
		from, to ruleset.Ruleset
		name     string
	}{{r0, with, "policy added"}, {with, r0, "policy deleted"}} {
		ch := ruleset.Diff(step.from, step.to)
		if step.name == "policy deleted" && !slices.Equal(ch.DelSets, []string{added}) {
			t.Errorf("%s: deletes sets %v, want [%s]", step.name, ch.DelSets, added)
		}
		if err := a.ApplyChanges(context.Background(), step.to, ch); err != nil {
			t.Fatalf("%s (%s): %v", step.name, ch, err)
		}
		got := testkit.NormalizeNft(testkit.Nft(t, ns, "", "list", "table", "inet", ruleset.TableName))
		if want := testkit.NormalizeNft(step.to.String()); got != want {
			t.Errorf("%s: kernel listing differs from rendered text:\n%s", step.name, textdiff.Lines(want, got))
		}
	}
}
