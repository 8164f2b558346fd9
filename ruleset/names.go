package ruleset

import (
	"crypto/sha256"
	"encoding/base32"
)

// TableName is weir's table, family inet: a Ruleset is its whole content.
const TableName = "weir"

// The base chain priorities nft names (`priority filter + 1`).
const (
	PriorityRaw      = -300
	PriorityMangle   = -150
	PriorityDstNAT   = -100
	PriorityFilter   = 0
	PrioritySecurity = 50
	PrioritySrcNAT   = 100
)

// Hash8 is a short, stable, name-safe digest (kube-proxy style), for the
// names of chains and counters.
func Hash8(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(sum[:])[:8]
}
