//go:build integration

package controller

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/iptables"
	"github.com/weir-cni/weir/nft"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// TestRemoveStaleLeavesOnlyTheBackendInUse programs weir with every
// backend in one fresh namespace, as successive runs of the agent would,
// and checks that RemoveStale with the iptables backend in use deletes the
// table inet weir (and the other flavour's chains), that with nftables in
// use it deletes weir's chains of both iptables flavours, and that nothing
// weir did not create is touched.
func TestRemoveStaleLeavesOnlyTheBackendInUse(t *testing.T) {
	n := testkit.NewTestNS(t, "weirt-cb-")
	ctx := context.Background()
	rs := policy.Compile(policy.Snapshot{})
	sh := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	weirChains := func(save string) bool { return strings.Contains(sh(save), ":"+iptables.Prefix) }
	hasTable := func() bool { return strings.Contains(sh("nft", "list", "tables"), "table inet "+ruleset.TableName) }
	err := n.Do(func(ns.NetNS) error {
		// Someone else's nftables table and iptables rule.
		sh("nft", "add", "table", "inet", "other")
		sh("iptables-legacy", "-A", "FORWARD", "-s", "192.0.2.0/24", "-j", "ACCEPT")
		openNFT := func() *nft.NetlinkApplier { // a new run of the agent: a fresh applier
			t.Helper()
			na, err := nft.NewNetlinkApplier("")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = na.Close() })
			if _, err := na.Apply(ctx, rs); err != nil {
				t.Fatal(err)
			}
			return na
		}
		open := func(m iptables.Mode) *iptables.Applier {
			t.Helper()
			a, err := iptables.New(iptables.WithMode(m))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Apply(ctx, rs); err != nil {
				t.Fatal(err)
			}
			return a
		}
		openNFT()
		open(iptables.ModeNFT)
		legacy := open(iptables.ModeLegacy)
		if !hasTable() || !weirChains("iptables-nft-save") || !weirChains("iptables-legacy-save") {
			t.Fatal("setup: weir is not in every backend")
		}

		// The agent now runs with iptables-legacy.
		removed, err := RemoveStale(ctx, legacy)
		if err != nil {
			t.Fatal(err)
		}
		if want := "table inet weir,iptables-nf_tables chains"; strings.Join(removed, ",") != want {
			t.Errorf("removed %q, want %s", removed, want)
		}
		if hasTable() || weirChains("iptables-nft-save") || weirChains("ip6tables-nft-save") {
			t.Error("the table inet weir or weir's iptables-nft chains are left")
		}
		if !weirChains("iptables-legacy-save") {
			t.Error("the chains of the backend in use were removed")
		}

		// And then with nftables again.
		open(iptables.ModeNFT)
		removed, err = RemoveStale(ctx, openNFT())
		if err != nil {
			t.Fatal(err)
		}
		if want := "iptables-legacy chains,iptables-nf_tables chains"; strings.Join(removed, ",") != want {
			t.Errorf("removed %q, want %s", removed, want)
		}
		for _, save := range []string{"iptables-legacy-save", "ip6tables-legacy-save", "iptables-nft-save", "ip6tables-nft-save"} {
			if weirChains(save) {
				t.Errorf("%s still holds weir chains", save)
			}
		}
		if !hasTable() {
			t.Error("the table of the backend in use was removed")
		}
		if !strings.Contains(sh("nft", "list", "tables"), "table inet other") ||
			!strings.Contains(sh("iptables-legacy-save"), "-A FORWARD -s 192.0.2.0/24 -j ACCEPT") {
			t.Error("a table or rule weir did not create was removed")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
