package ruleset

// TableName is weir's table, family inet: a Ruleset is its whole content.
const TableName = "weir"

// The base chain priorities nft names (`priority filter + 1`).
const (
	PriorityRaw    = -300
	PriorityFilter = 0
	PrioritySrcNAT = 100
)
