// Package ruleset is the ruleset value: the whole content of weir's table
// `inet weir` (sets, maps, chains, rules, named counters) as plain Go data.
//
// It is pure (no clock, no I/O): Ruleset.String renders a ruleset as
// `nft -f` text, Diff computes the changes between two rulesets, and Trace
// walks one for a packet ("would this be allowed, and by which rule"),
// step by step.
//
// Every rule and counter carries its Owner as data: the policy rule it
// stands for, or which of weir's own rules it is. Rule comments are
// rendered from it, and readers (metrics, logs, explain) use its fields:
// nothing parses a comment, a counter name or a trace's text.
//
// Layer: the value between the compiler, package policy, which produces
// rulesets, and the kernel backends, packages nft and iptables, which apply
// them. It imports nothing of weir: neither the compiler nor a backend.
package ruleset
