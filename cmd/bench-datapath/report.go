package main

import (
	"strings"

	"github.com/weir-cni/weir/internal/datapath"
)

// splits split the table's cost, for the configurations that were
// measured: nft against nft-bare (the same table compiled without
// policies) is the policy walk alone; nft and nft-bare against conntrack
// (one stateful rule) are what weir adds to the conntrack that any
// stateful filtering pays; each conntrack+<part> against conntrack is that
// part of the skeleton alone (-parts). nft / conntrack carries the
// targets.
func splits(all []*datapath.Samples) []datapath.Split {
	out := []datapath.Split{
		{Num: "nft", Den: "nft-bare", Label: "policy walk alone"},
		{Num: "nft", Den: "conntrack", Label: "weir beyond conntrack", Targets: true},
		{Num: "nft-bare", Den: "conntrack", Label: "NAT and skeleton"},
	}
	for _, s := range all {
		if part, ok := strings.CutPrefix(s.Name, "conntrack+"); ok {
			out = append(out, datapath.Split{Num: s.Name, Den: "conntrack", Label: part + " chain alone"})
		}
	}
	return out
}
