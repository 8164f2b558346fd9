// Package iptables is weir's fallback backend for kernels without nf_tables:
// it translates the same ruleset value as the nftables backend
// (ruleset.Ruleset) into iptables and ip6tables chains, and applies them
// with one iptables-restore --noflush (and one ip6tables-restore) per sync.
//
// Layer: a kernel backend beside package nft, implementing
// dataplane.Applier and dataplane.JumpKeeper; it imports packages ruleset
// and dataplane only, never the compiler (policy) nor nft.
//
// Render and everything it calls are pure: the model in, iptables-restore
// text out. Applier touches the kernel: it detects the iptables flavour with
// github.com/coreos/go-iptables, lists weir's own chains, and runs the restore
// binaries, optionally inside another network namespace.
//
// Layout. Every chain weir owns is named WEIR-...; built-in chains get one
// jump each, at position 1, into a top chain (filter FORWARD -> WEIR-FORWARD,
// filter INPUT -> WEIR-INPUT, nat POSTROUTING -> WEIR-POSTROUTING). A hook
// whose base chains would accept every packet (the input hook with no
// Admin tier egress policy) gets no chain and no jump. Built-in chains are never flushed
// and chains weir did not create are never touched. nftables base chains of
// one hook become jumps from the top chain, in priority order. An nftables
// accept ends one base chain only; here it jumps to a "pass" chain that runs
// the remaining base chains of the hook and then ACCEPTs, so the source's
// egress AND the destination's ingress must both allow, as with nftables,
// without packet marks. As in Calico's and kube-router's default, weir's
// ACCEPT is final for the filter table: rules placed after weir's jump in
// FORWARD do not see traffic weir accepts (traffic weir's chains leave alone
// returns to FORWARD as usual).
//
// Sets without ipset. A lookup becomes a chain with one rule per element
// (a prefix as -s/-d, any other address range as -m iprange, protocol and
// port ranges as -p PROTO --dport LO:HI). Several lookups AND-ed in one rule
// become a chain of such chains: each element of the first set goes (-g) to
// the chain of the next set, and the last one carries the verdict; a verdict
// map becomes one rule per key going to its target chain, and a map without
// elements no rule at all. Nothing is ever a cross product, and the verdicts
// are exactly those of the nftables ruleset.
//
// Marks, logs and returns (the ClusterNetworkPolicy tiers). A mark test is
// -m mark --mark BITS/BITS. A rule that logs or sets the mark and takes a
// verdict goes to an action chain: -j NFLOG (under -m limit, which holds
// back the log only), -j MARK --set-xmark VALUE/MASK, and then the verdict,
// so the verdict applies to exactly the packets the rule matched whatever
// mark they came with or whatever the log's rate (a logged Deny drops every
// packet), and the rule counts once. A return is RETURN, or falling off an
// action chain entered with -g. A rule that may return from its chain
// (an Admin tier Pass after lookups, a map holding a return) enters its
// lookup chains with -g, so that RETURN leaves the rule's chain; the rules
// after it move to a rest chain those lookups go (-g) to on a miss.
//
// Problems. What the translation cannot express (a base chain of a type
// or hook iptables lacks, a match kind it does not know, a jump to a
// missing chain) is left out, and Apply returns it as dataplane.Problem
// values, once for both families, naming the policy rule when the rule's
// comment does. Of the compiler's output, only the DNS steering of
// ClusterNetworkPolicy domainNames rules is left out (prerouting filter
// chains after conntrack, where iptables has no table to filter in): DNS
// queries go to their resolver as before, and each domainNames rule is
// reported, its names allowing nothing (no proxy fills its sets).
//
// Apply. New picks the flavour (legacy or nf_tables) of the host's iptables
// command, or the one asked for, and the matching iptables-MODE-restore
// binaries. Each Apply runs one `iptables-restore --noflush` and one
// `ip6tables-restore --noflush`, each committed atomically per table by the
// kernel: it declares (so flushes) and refills the weir chains whose rules
// changed since the last Apply, deletes the weir chains no longer needed, and
// deletes or inserts the jumps from built-in chains so that exactly one sits
// at position 1. The first Apply, the one after a failure, and every 30th
// rewrite every weir chain, repairing edits made behind weir's back. The
// caller's context ends the restore processes. Between Applies,
// KeepJumpsFirst puts back the jumps that another program (kube-proxy's
// KUBE-FORWARD) pushed down from position 1.
//
// Cost. Unlike the nftables backend, whose per-packet cost stays flat with
// hash and interval sets, a new connection here walks the elements one rule
// at a time: per-packet cost grows linearly with the number of pods and
// policy peers. The conntrack rules every base chain starts with (established
// and related accept, invalid drop) run once, first in WEIR-FORWARD, so
// established traffic costs two rules. A sync rewrites text through a
// process: at 10,000 pods and 1,000 policies a full sync took ≈ 0.5 s
// (legacy) to 1.3 s (nf_tables) and one pod change ≈ 0.3–0.45 s here
// (BenchmarkApply), against milliseconds for the nftables backend. Use this
// backend only where nf_tables is missing.
package iptables
