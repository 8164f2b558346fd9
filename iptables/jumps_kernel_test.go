//go:build integration

package iptables

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/weir-cni/weir/policy"
)

// TestKeepJumpsFirst has another program (kube-proxy, say) insert its rule
// at position 1 of FORWARD and POSTROUTING after weir's Apply, in a fresh
// namespace per flavour: KeepJumpsFirst puts weir's jumps back on top,
// reports them, keeps the foreign rules (just below), and finds nothing to
// do the second time.
func TestKeepJumpsFirst(t *testing.T) {
	for _, m := range []Mode{ModeNFT, ModeLegacy} {
		t.Run(string(m), func(t *testing.T) {
			name, path := addNetns(t, "jump")
			flavour := map[Mode]string{ModeNFT: "nft", ModeLegacy: "legacy"}[m]
			ipt, save4 := "iptables-"+flavour, "iptables-"+flavour+"-save"
			a, err := New(WithNetNS(path), WithMode(m))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if moved, err := a.KeepJumpsFirst(ctx); err != nil || len(moved) != 0 {
				t.Fatalf("before any Apply: moved %v, err %v", moved, err)
			}
			rs := policy.Compile(loadScenario(t, "testdata/talk-dualstack.yaml").Snapshot)
			if _, err := a.Apply(ctx, rs); err != nil {
				t.Fatal(err)
			}
			run(t, "ip", "netns", "exec", name, ipt, "-N", "KUBE-FORWARD")
			run(t, "ip", "netns", "exec", name, ipt, "-I", "FORWARD", "1", "-j", "KUBE-FORWARD")
			run(t, "ip", "netns", "exec", name, ipt, "-t", "nat", "-I", "POSTROUTING", "1", "-s", "192.0.2.0/24", "-j", "RETURN")
			moved, err := a.KeepJumpsFirst(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"iptables filter FORWARD", "iptables nat POSTROUTING"}; !reflect.DeepEqual(moved, want) {
				t.Errorf("moved %v, want %v", moved, want)
			}
			all := parseSave(save(t, name, save4), true)
			for _, c := range []struct{ chain, jump, foreign string }{
				{"filter FORWARD", "-A FORWARD -j WEIR-FORWARD", "-A FORWARD -j KUBE-FORWARD"},
				{"nat POSTROUTING", "-A POSTROUTING -j WEIR-POSTROUTING", "-A POSTROUTING -s 192.0.2.0/24 -j RETURN"},
			} {
				rules := all[c.chain]
				if len(rules) != 2 || rules[0] != c.jump || rules[1] != c.foreign {
					t.Errorf("%s holds %q, want weir's jump then the foreign rule", c.chain, rules)
				}
			}
			if moved, err := a.KeepJumpsFirst(ctx); err != nil || len(moved) != 0 {
				t.Errorf("second check: moved %v, err %v", moved, err)
			}
			// The next Apply agrees with the repaired kernel.
			if _, err := a.Apply(ctx, rs); err != nil {
				t.Fatal(err)
			}
			if got := parseSave(save(t, name, save4), true)["filter FORWARD"]; len(got) != 2 || !strings.Contains(got[0], "WEIR-FORWARD") {
				t.Errorf("after Apply FORWARD holds %q", got)
			}
		})
	}
}
