package main

import (
	"github.com/weir-cni/weir/internal/datapath"
	"github.com/weir-cni/weir/ruleset"
)

// checkPath proves the benchmark measures what it claims
// (datapath.CheckPath on testPort). With learned pairs, it is traced with
// them in their set, and checkLearned must pass too.
func checkPath(rs ruleset.Ruleset, l learned) (datapath.Path, error) {
	if len(l.pairs) > 0 {
		if err := checkLearned(rs, l); err != nil {
			return datapath.Path{}, err
		}
		rs = traced(rs, l)
	}
	return datapath.CheckPath(rs, testPort)
}
