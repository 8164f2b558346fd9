package iptables

import (
	"strconv"
	"strings"

	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/ruleset"
)

// Names weir uses in iptables. Every chain weir owns starts with Prefix.
const (
	// Prefix starts the name of every chain weir creates.
	Prefix = "WEIR-"
	// maxChainName is the longest chain name iptables accepts.
	maxChainName = 28
	// maxComment is the longest comment the comment match accepts.
	maxComment = 255
	// maxNflogPrefix is the longest prefix the NFLOG target accepts.
	maxNflogPrefix = 63
	// readablePart is how much of a model name a hashed chain name keeps.
	readablePart = maxChainName - len(Prefix) - 1 - 8
)

// Built-in targets.
const (
	targetAccept     = "ACCEPT"
	targetDrop       = "DROP"
	targetReturn     = "RETURN"
	targetMasquerade = "MASQUERADE"
)

// familyRules is what one family (iptables or ip6tables) holds: tables in a
// fixed order (filter, then nat).
type familyRules struct {
	v6     bool
	tables []*table
	// problems are the parts of the ruleset left out: Apply returns them.
	problems []dataplane.Problem
}

// table is one iptables table and the chains weir owns in it.
type table struct {
	name string // filter, nat
	// jumps are the built-in chains that jump to a weir top chain, sorted.
	jumps []jump
	// chains in emission order (top chains first).
	chains []*chain
	byName map[string]*chain
}

// jump is the rule `-I BUILTIN 1 -j TARGET` Apply keeps in place.
type jump struct {
	builtin, target string
}

// spec returns the jump's rule spec as go-iptables and -D/-I take it.
func (j jump) spec() []string { return []string{"-j", j.target} }

// chain is a weir-owned chain.
type chain struct {
	name  string
	rules []rule
}

// rule is one iptables rule: every set field must match, then target runs
// (a jump, or a goto when Goto is set).
type rule struct {
	src, dst           string // CIDR for -s / -d
	srcRange, dstRange string // a-b for -m iprange
	proto              string // tcp, udp, sctp or a number
	dport              string // "80" or "80:90"; needs proto
	ctStates           string // RELATED,ESTABLISHED...
	comment            string
	// iif is an input interface (-i; "weir+" is a prefix), negated by
	// notIif.
	iif    string
	notIif bool
	// oif is an output interface (-o), negated by notOif.
	oif    string
	notOif bool
	// srcGroup and dstGroup are link groups of the input and output
	// interfaces (-m devgroup --src-group / --dst-group, in hex as
	// iptables-save prints them).
	srcGroup, dstGroup string
	// rpfail matches packets failing the strict reverse-path test
	// (-m rpfilter --invert: raw and mangle PREROUTING only).
	rpfail bool
	// marks are -m mark tests of the packet mark, all of which must hold.
	marks []markTest
	// limit is a -m limit rate ("10/sec", default burst 5) before the target.
	limit  string
	target string
	goTo   bool
	// nflog holds the NFLOG target's options (target NFLOG).
	nflog *nflog
	// setMark, when set, makes the target MARK --set-xmark Value/Mask: it
	// rewrites the packet mark and goes on with the next rule.
	setMark *ruleset.MarkSet
	// counter is the model's named counter (ruleset.Rule.Counter) that this
	// rule's packets count into. It is not rendered: iptables counts every
	// rule, and Counters sums the rules of each name.
	counter string
}

// leaves reports whether every packet that reaches r leaves its chain
// there: r goes (-g) to its target and matches every packet, having no
// match but its comment (which matches all), so no rule after it is
// reached. The matches are those matchArgs renders, so that a match
// added there counts here.
func (r rule) leaves() bool {
	r.comment = ""
	return r.goTo && r.nflog == nil && r.setMark == nil && len(r.matchArgs()) == 0
}

// markTest is ruleset.MatchMark: every bit of bits set in the packet mark
// (-m mark --mark BITS/BITS), or not when negate.
type markTest struct {
	bits   uint32
	negate bool
}

// nflog is the NFLOG target's group and prefix.
type nflog struct {
	group  uint16
	prefix string
}

func (t *table) chain(name string) *chain {
	if c, ok := t.byName[name]; ok {
		return c
	}
	c := &chain{name: name}
	t.byName[name] = c
	t.chains = append(t.chains, c)
	return c
}

// args renders the rule in the order iptables-save prints it.
func (r rule) args() []string {
	a := r.matchArgs()
	if r.nflog != nil {
		p := r.nflog.prefix
		if len(p) > maxNflogPrefix {
			p = p[:maxNflogPrefix]
		}
		return append(a, "-j", "NFLOG", "--nflog-prefix", quote(p), "--nflog-group", strconv.Itoa(int(r.nflog.group)))
	}
	if m := r.setMark; m != nil {
		return append(a, "-j", "MARK", "--set-xmark", hexMask(m.Value, m.Mask))
	}
	if r.goTo {
		return append(a, "-g", r.target)
	}
	return append(a, "-j", r.target)
}

// matchArgs renders the rule's matches, its comment among them, in the
// order iptables-save prints them: nil when it has none.
func (r rule) matchArgs() []string {
	var a []string
	if r.src != "" {
		a = append(a, "-s", r.src)
	}
	if r.dst != "" {
		a = append(a, "-d", r.dst)
	}
	if r.iif != "" {
		if r.notIif {
			a = append(a, "!")
		}
		a = append(a, "-i", r.iif)
	}
	if r.oif != "" {
		if r.notOif {
			a = append(a, "!")
		}
		a = append(a, "-o", r.oif)
	}
	if r.proto != "" {
		a = append(a, "-p", r.proto)
	}
	a = appendMatch(a, "iprange", "--src-range", r.srcRange, "--dst-range", r.dstRange)
	if r.dport != "" {
		a = append(a, "-m", r.proto, "--dport", r.dport)
	}
	a = appendMatch(a, "devgroup", "--src-group", r.srcGroup, "--dst-group", r.dstGroup)
	if r.ctStates != "" {
		a = append(a, "-m", "conntrack", "--ctstate", r.ctStates)
	}
	for _, m := range r.marks {
		a = append(a, "-m", "mark")
		if m.negate {
			a = append(a, "!")
		}
		a = append(a, "--mark", hexMask(m.bits, m.bits))
	}
	if r.rpfail {
		a = append(a, "-m", "rpfilter", "--invert")
	}
	if r.comment != "" {
		a = append(a, "-m", "comment", "--comment", quote(r.comment))
	}
	if r.limit != "" {
		a = append(a, "-m", "limit", "--limit", r.limit) // burst 5: the default
	}
	return a
}

// hexMask spells VALUE/MASK as iptables-save prints marks.
func hexMask(value, mask uint32) string {
	return "0x" + strconv.FormatUint(uint64(value), 16) + "/0x" + strconv.FormatUint(uint64(mask), 16)
}

// appendMatch appends `-m module` and those of its options (flag, value
// pairs) whose value is set; nothing when none is.
func appendMatch(a []string, module string, opts ...string) []string {
	out := append(a, "-m", module)
	for i := 0; i+1 < len(opts); i += 2 {
		if opts[i+1] != "" {
			out = append(out, opts[i], opts[i+1])
		}
	}
	if len(out) == len(a)+2 {
		return a
	}
	return out
}

// quote quotes a comment for iptables-restore input.
func quote(s string) string {
	if len(s) > maxComment {
		s = s[:maxComment]
	}
	s = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", " ").Replace(s)
	return `"` + s + `"`
}

// chainName maps a model name to an iptables chain name: Prefix and the name
// when it fits and is plain, else Prefix, the first characters, and a hash of
// the whole name, so names stay unique and at most 28 characters long.
func chainName(name string) string {
	clean := sanitize(name)
	if clean == name && len(Prefix)+len(name) <= maxChainName {
		return Prefix + name
	}
	if len(clean) > readablePart {
		clean = clean[:readablePart]
	}
	return Prefix + clean + "-" + ruleset.Hash8(name)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

// subName names the chain of step j of rule k of chain parent.
func subName(parent string, k int, step string) string {
	return Prefix + ruleset.Hash8(parent) + "-r" + strconv.Itoa(k) + "-" + step
}
