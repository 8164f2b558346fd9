package main

import (
	"github.com/weir-cni/weir/internal/datapath"
	"github.com/weir-cni/weir/ruleset"
)

// newIptables opens the iptables backend for the node namespace at
// nodePath. It is nil when this binary was built without it (see
// iptables.go).
var newIptables func(nodePath string, rs ruleset.Ruleset) (datapath.Backend, error)

// iptablesMissing says why newIptables is nil.
var iptablesMissing = "this binary was built without the iptables backend"
