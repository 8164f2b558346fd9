package iptables

import (
	"strings"

	"github.com/weir-cni/weir/ruleset"
)

// Render translates rs into iptables-restore --noflush input for iptables
// (v4) and ip6tables (v6). It is pure and byte-stable. Each table section
// declares every weir chain (`:NAME - [0:0]`, which creates or flushes it)
// and appends its rules; built-in chains are never declared, so they are
// not flushed. The jumps from built-in chains are not part of the text: they
// depend on what the kernel holds, and Applier adds them.
func Render(rs ruleset.Ruleset) (v4, v6 string) {
	return build(rs, false).text(nil), build(rs, true).text(nil)
}

// edits are what Apply adds to a table's section: stale weir chains to
// delete, and jump rules to delete or insert in built-in chains.
type edits struct {
	stale   []string // weir chains the ruleset no longer has
	delJump []jump   // misplaced or stale jumps
	addJump []jump   // jumps to insert at position 1
	// same lists chains the kernel already holds exactly: not rewritten.
	same map[string]bool
	// present lists the chains the kernel holds.
	present map[string]bool
}

// text renders the family; extra holds Apply's edits per table name, and may
// name tables the ruleset does not use (to clean them up).
func (r *familyRules) text(extra map[string]edits) string {
	var b strings.Builder
	cmd := "iptables"
	if r.v6 {
		cmd = "ip6tables"
	}
	b.WriteString("# weir: " + cmd + "-restore --noflush input generated from table inet " + ruleset.TableName + "\n")
	seen := map[string]bool{}
	for _, t := range r.tables {
		seen[t.name] = true
		t.text(&b, extra[t.name])
	}
	for _, name := range tableNames {
		if e, ok := extra[name]; ok && !seen[name] {
			(&table{name: name}).text(&b, e)
		}
	}
	return b.String()
}

func (t *table) text(b *strings.Builder, e edits) {
	if len(t.chains) == len(e.same) && len(e.stale) == 0 && len(e.delJump) == 0 && len(e.addJump) == 0 {
		return
	}
	b.WriteString("*" + t.name + "\n")
	for _, c := range t.chains {
		if !e.same[c.name] {
			b.WriteString(":" + c.name + " - [0:0]\n")
		}
	}
	for _, s := range e.stale {
		b.WriteString(":" + s + " - [0:0]\n")
	}
	for _, j := range e.delJump {
		b.WriteString("-D " + j.builtin + " " + strings.Join(j.spec(), " ") + "\n")
	}
	for _, c := range t.chains {
		if e.same[c.name] {
			continue
		}
		for _, r := range c.rules {
			b.WriteString("-A " + c.name + " " + strings.Join(r.args(), " ") + "\n")
		}
	}
	for _, j := range e.addJump {
		b.WriteString("-I " + j.builtin + " 1 " + strings.Join(j.spec(), " ") + "\n")
	}
	for _, s := range e.stale {
		b.WriteString("-X " + s + "\n")
	}
	b.WriteString("COMMIT\n")
}
