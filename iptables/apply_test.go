//go:build integration

package iptables

import (
	"context"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// weirState is what a family's tables hold of weir: per table, the rules
// of each WEIR chain in order, and the built-in chains' rules.
type weirState map[string][]string

// parseSave reads iptables-save (or Render) text into per-chain rule lists,
// keyed "table chain". Quotes are dropped: iptables-save quotes comments
// only when they need it, and escapes single quotes in them (a
// ClusterNetworkPolicy rule's name), which Render does not.
func parseSave(text string, withBuiltins bool) weirState {
	st := weirState{}
	tbl := ""
	for _, l := range strings.Split(text, "\n") {
		l = strings.NewReplacer(`"`, "", `\'`, "'").Replace(strings.TrimSpace(l))
		switch {
		case strings.HasPrefix(l, "*"):
			tbl = l[1:]
		case strings.HasPrefix(l, ":"+Prefix):
			key := tbl + " " + strings.Fields(l[1:])[0]
			if _, ok := st[key]; !ok {
				st[key] = []string{}
			}
		case strings.HasPrefix(l, "-A "):
			chain := strings.Fields(l)[1]
			if strings.HasPrefix(chain, Prefix) || withBuiltins {
				st[tbl+" "+chain] = append(st[tbl+" "+chain], l)
			}
		}
	}
	return st
}

// save runs bin (an iptables-save) with args in netns nsName.
func save(t *testing.T, nsName, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", nsName, bin}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", bin, err, out)
	}
	return string(out)
}

// TestApplyRoundTrip applies rulesets in a fresh namespace for both
// flavours and checks, through iptables-save, that the kernel holds exactly
// the rendered chains, that the jumps sit at position 1 once, that a second
// Apply changes nothing, that stale chains go, and that rules and chains
// weir did not create survive everything, Remove included.
func TestApplyRoundTrip(t *testing.T) {
	for _, m := range []Mode{ModeNFT, ModeLegacy} {
		t.Run(string(m), func(t *testing.T) {
			name, path := addNetns(t, "rt")
			flavour := map[Mode]string{ModeNFT: "nft", ModeLegacy: "legacy"}[m]
			ipt, save4, save6 := "iptables-"+flavour, "iptables-"+flavour+"-save", "ip6tables-"+flavour+"-save"
			// Someone else's chain and rules.
			run(t, "ip", "netns", "exec", name, ipt, "-N", "OTHER")
			run(t, "ip", "netns", "exec", name, ipt, "-A", "OTHER", "-j", "RETURN")
			run(t, "ip", "netns", "exec", name, ipt, "-A", "FORWARD", "-j", "OTHER")
			run(t, "ip", "netns", "exec", name, ipt, "-t", "nat", "-A", "POSTROUTING", "-s", "192.0.2.0/24", "-j", "RETURN")

			a, err := New(WithNetNS(path), WithMode(m))
			if err != nil {
				t.Fatal(err)
			}
			if a.Mode() != m {
				t.Fatalf("mode %s, want %s", a.Mode(), m)
			}
			ctx := context.Background()
			big := policy.Compile(loadScenario(t, "testdata/talk-dualstack.yaml").Snapshot)
			small := policy.Compile(loadScenario(t, "testdata/deny-egress.yaml").Snapshot)
			check := func(rs ruleset.Ruleset) {
				t.Helper()
				v4, v6 := Render(rs)
				for _, f := range []struct{ want, bin string }{{v4, save4}, {v6, save6}} {
					text := save(t, name, f.bin)
					got, want := parseSave(text, false), parseSave(f.want, false)
					if !reflect.DeepEqual(got, want) {
						t.Errorf("%s: kernel holds\n%v\nwant\n%v", f.bin, got, want)
					}
					all := parseSave(text, true)
					for _, j := range []string{"filter FORWARD", "nat POSTROUTING"} {
						_, used := want[strings.Replace(j, " ", " WEIR-", 1)]
						rules := all[j]
						jumps := 0
						for _, r := range rules {
							if strings.Contains(r, "-j "+Prefix) {
								jumps++
							}
						}
						if used && (jumps != 1 || !strings.Contains(rules[0], "-j "+Prefix)) {
							t.Errorf("%s %s: want one jump at position 1, got %q", f.bin, j, rules)
						}
						if !used && jumps != 0 {
							t.Errorf("%s %s: stale jump left: %q", f.bin, j, rules)
						}
					}
				}
				text := save(t, name, save4)
				if !strings.Contains(text, "-A FORWARD -j OTHER") || !strings.Contains(text, "-A OTHER -j RETURN") ||
					!strings.Contains(text, "-A POSTROUTING -s 192.0.2.0/24 -j RETURN") {
					t.Errorf("foreign rules touched:\n%s", text)
				}
			}
			// Every scenario, ours and nft's, twice in a row: the kernel
			// accepts each rendered text and holds exactly it, and the
			// previous scenario's chains go.
			files, _ := filepath.Glob("testdata/*.yaml")
			more, _ := filepath.Glob("../policy/testdata/compile/*.yaml")
			for _, file := range append(files, more...) {
				rs := policy.Compile(loadScenario(t, file).Snapshot)
				for range 2 {
					if _, err := a.Apply(ctx, rs); err != nil {
						t.Fatalf("apply %s: %v", file, err)
					}
					check(rs)
				}
			}
			for i, rs := range []ruleset.Ruleset{big, small, big} {
				if _, err := a.Apply(ctx, rs); err != nil {
					t.Fatalf("apply %d: %v", i, err)
				}
				check(rs)
			}
			// A rule inserted above weir's jump: the next Apply moves the
			// jump back to position 1.
			run(t, "ip", "netns", "exec", name, ipt, "-I", "FORWARD", "1", "-j", "OTHER")
			if _, err := a.Apply(ctx, big); err != nil {
				t.Fatal(err)
			}
			check(big)
			if err := a.Remove(ctx); err != nil {
				t.Fatal(err)
			}
			check(ruleset.Ruleset{})
			var left []string
			for k := range parseSave(save(t, name, save4)+save(t, name, save6), false) {
				left = append(left, k)
			}
			sort.Strings(left)
			if len(left) > 0 {
				t.Errorf("Remove left chains %v", left)
			}
		})
	}
}

// BenchmarkApply measures, with 10,000 pods and 1,000 policies in a fresh
// namespace per flavour, a full sync (the first Apply: list, render,
// restore) and a sync after one pod goes away or comes back (only the
// chains that changed are rewritten). Compile is not included.
func BenchmarkApply(b *testing.B) {
	s := synth.Cluster(synth.Big)
	rs := policy.Compile(s)
	s.Pods = s.Pods[1:]
	less := policy.Compile(s)
	for _, m := range []Mode{ModeNFT, ModeLegacy} {
		_, path := addNetns(b, "bench")
		b.Run(string(m)+"/full", func(b *testing.B) {
			for b.Loop() {
				a, err := New(WithNetNS(path), WithMode(m))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := a.Apply(context.Background(), rs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(m)+"/one-pod", func(b *testing.B) {
			a, err := New(WithNetNS(path), WithMode(m))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := a.Apply(context.Background(), rs); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				next := rs
				if i%2 == 1 {
					next = less
				}
				if _, err := a.Apply(context.Background(), next); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
