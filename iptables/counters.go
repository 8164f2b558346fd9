package iptables

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/weir-cni/weir/ruleset"
)

// countersAttempts is how many times Counters reads before it gives up on
// a kernel whose counted rules keep being rewritten under it.
const countersAttempts = 3

// ErrRulesChanging is returned by Counters when every read it made
// overlapped an Apply that changed which counter the rules count into.
var ErrRulesChanging = errors.New("counted rules rewritten during every read")

// Counters reads what each named counter of the applied ruleset has counted
// (see ruleset.Rule.Counter), as the nftables backend's counters do: the sum of
// the counts of the iptables rules that stand for the rules counting into
// it, over both families. iptables keeps a count per rule, so a counter
// restarts from zero whenever Apply rewrites a chain holding one of its
// rules: a policy edit, a change in the pods or addresses the rule matches,
// and the rewrite of every chain each fullEvery-th Apply. (nftables keeps
// its named counters across edits.)
//
// iptables-save prints counts by rule position, so a read needs to know
// which counter each position counts into. Counters copies that layout
// under the Applier's lock and runs iptables-save without it: an Apply
// never waits for a read. A read that an Apply changing the layout
// overlapped may have seen either layout, so it is thrown away and made
// again, up to countersAttempts reads in all (then ErrRulesChanging).
//
// ctx ends the iptables-save processes.
func (a *Applier) Counters(ctx context.Context) (map[string]ruleset.CounterValue, error) {
	for range countersAttempts {
		out, ok, err := a.readCounters(ctx)
		if ok {
			return out, err
		}
	}
	return nil, fmt.Errorf("read counters: %w", ErrRulesChanging)
}

// countedLayout is what one family's counters are read by: see family.
type countedLayout struct {
	save, restore string
	counted       map[string]map[string][]string
	known         bool
}

// readCounters reads the counters once. ok is false when an Apply may
// have changed the layout while iptables-save ran: out and err mean
// nothing then.
func (a *Applier) readCounters(ctx context.Context) (out map[string]ruleset.CounterValue, ok bool, err error) {
	// Apply replaces counters and counted, never modifies them: the
	// copies stay valid after the lock is released.
	a.mu.Lock()
	before := a.layouts.Load()
	names := a.counters
	fams := make([]countedLayout, len(a.fams))
	for i, f := range a.fams {
		fams[i] = countedLayout{save: f.save, restore: f.restore, counted: f.counted, known: f.countedKnown}
	}
	a.mu.Unlock()

	out = make(map[string]ruleset.CounterValue, len(names))
	for _, c := range names {
		out[c.Name] = ruleset.CounterValue{} // listed even when no rule counts into it
	}
	var errs []error
	for _, f := range fams {
		if !f.known && len(names) > 0 {
			errs = append(errs, fmt.Errorf("%s: the last apply failed; counts are unknown until one succeeds", f.restore))
			continue
		}
		for tbl, chains := range f.counted {
			text, err := a.run(ctx, nil, f.save, "--counters", "--table", tbl)
			if err == nil {
				err = addCounts(out, text, chains)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("read counters of table %s: %w", tbl, err))
			}
		}
	}
	if a.layouts.Load() != before {
		return nil, false, nil
	}
	if len(errs) > 0 {
		return nil, true, errors.Join(errs...)
	}
	return out, true, nil
}

// sameCounted tells whether two layouts (see counted) are equal.
func sameCounted(a, b map[string]map[string][]string) bool {
	return maps.EqualFunc(a, b, func(x, y map[string][]string) bool {
		return maps.EqualFunc(x, y, slices.Equal[[]string])
	})
}

// counted lists, for each chain of r, the named counter of each rule.
// Chains without any are left out: Counters reads only tables with some.
func counted(r *familyRules) map[string]map[string][]string {
	out := map[string]map[string][]string{}
	for _, t := range r.tables {
		for _, c := range t.chains {
			names := make([]string, len(c.rules))
			has := false
			for i, rl := range c.rules {
				names[i] = rl.counter
				has = has || rl.counter != ""
			}
			if !has {
				continue
			}
			if out[t.name] == nil {
				out[t.name] = map[string][]string{}
			}
			out[t.name][c.name] = names
		}
	}
	return out
}

// addCounts adds to out the counts that `iptables-save --counters` printed
// in text ("[packets:bytes] -A CHAIN ..." per rule) for the rules that
// chains names, by position in their chain.
func addCounts(out map[string]ruleset.CounterValue, text []byte, chains map[string][]string) error {
	pos := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "[") {
			continue
		}
		end := strings.Index(line, "] -A ")
		if end < 0 {
			continue
		}
		chain, _, _ := strings.Cut(line[end+len("] -A "):], " ")
		names, ok := chains[chain]
		if !ok {
			continue
		}
		i := pos[chain]
		pos[chain]++
		if i >= len(names) {
			return fmt.Errorf("chain %s holds more rules than weir wrote", chain)
		}
		if names[i] == "" {
			continue
		}
		pkts, size, ok := strings.Cut(line[1:end], ":")
		p, perr := strconv.ParseUint(pkts, 10, 64)
		b, berr := strconv.ParseUint(size, 10, 64)
		if !ok || perr != nil || berr != nil {
			return fmt.Errorf("unreadable counts in %q", line)
		}
		v := out[names[i]]
		v.Packets += p
		v.Bytes += b
		out[names[i]] = v
	}
	if err := sc.Err(); err != nil {
		return err
	}
	for chain, names := range chains {
		if pos[chain] != len(names) {
			return fmt.Errorf("chain %s holds %d rules, weir wrote %d", chain, pos[chain], len(names))
		}
	}
	return nil
}
