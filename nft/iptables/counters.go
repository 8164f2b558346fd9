package iptables

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weir-cni/weir/nft"
)

// countersTimeout bounds one Counters call.
const countersTimeout = 10 * time.Second

// Counters reads what each named counter of the applied ruleset has counted
// (see nft.Rule.Counter), as the nftables backend's counters do: the sum of
// the counts of the iptables rules that stand for the rules counting into
// it, over both families. iptables keeps a count per rule, so a counter
// restarts from zero whenever Apply rewrites a chain holding one of its
// rules: a policy edit, a change in the pods or addresses the rule matches,
// and the rewrite of every chain each fullEvery-th Apply. (nftables keeps
// its named counters across edits.) It holds the Applier's lock while
// iptables-save runs, so an Apply waits for it.
func (a *Applier) Counters() (map[string]nft.CounterValue, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), countersTimeout)
	defer cancel()
	out := make(map[string]nft.CounterValue, len(a.counters))
	for _, n := range a.counters {
		out[n] = nft.CounterValue{} // listed even when no rule counts into it
	}
	var errs []error
	for _, f := range a.fams {
		if !f.countedKnown && len(a.counters) > 0 {
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
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// counted lists, for each chain of r, the named counter of each rule.
// Chains without any are left out: Counters reads only tables with some.
func counted(r *ruleset) map[string]map[string][]string {
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
func addCounts(out map[string]nft.CounterValue, text []byte, chains map[string][]string) error {
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
