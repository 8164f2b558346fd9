package main

import (
	"slices"
	"testing"

	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// TestWithPart pins what -parts measures: the conntrack floor plus one
// base chain of weir's table and the chains it jumps to, with exactly the
// sets and counters their rules use, and nothing of the rest.
func TestWithPart(t *testing.T) {
	rs := policy.Compile(synth.Cluster(synth.Options{Pods: 300, Policies: 30, Local: 1}))
	for part, want := range map[string]struct{ chains, sets, counters []string }{
		"nat":   {[]string{"forward", "postrouting-masq"}, []string{"cluster-cidrs4", "pod-cidrs4"}, nil},
		"spoof": {[]string{"forward", "prerouting-spoof", "spoof-drop"}, []string{"unrouted4", "unrouted6"}, []string{"spoofed"}},
	} {
		got, err := withPart(rs, part)
		if err != nil {
			t.Fatal(err)
		}
		if names := chainNames(got); !slices.Equal(names, want.chains) {
			t.Errorf("%s: chains %v, want %v", part, names, want.chains)
		}
		var sets, counters []string
		for _, s := range got.Sets {
			sets = append(sets, s.Name)
		}
		for _, c := range got.Counters {
			counters = append(counters, c.Name)
		}
		if !slices.Equal(sets, want.sets) || !slices.Equal(counters, want.counters) {
			t.Errorf("%s: sets %v, counters %v; want %v, %v", part, sets, counters, want.sets, want.counters)
		}
		if ch, _ := got.Chain(parts[part]); ch.Base == nil || len(ch.Rules) == 0 {
			t.Errorf("%s: chain %s is not weir's base chain: %+v", part, parts[part], ch)
		}
	}
}

// TestWithPartWithoutTheChain: a table without the part's chain (no
// cluster CIDR, no masquerade) is an error, not a floor measured twice.
func TestWithPartWithoutTheChain(t *testing.T) {
	s := synth.Cluster(synth.Options{Pods: 300, Policies: 30, Local: 1})
	s.ClusterCIDRs = nil
	if _, err := withPart(policy.Compile(s), "nat"); err == nil {
		t.Error("no error for a table without postrouting-masq")
	}
}

func chainNames(r ruleset.Ruleset) []string {
	var out []string
	for _, c := range r.Chains {
		out = append(out, c.Name)
	}
	return out
}
