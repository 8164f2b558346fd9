package iptables

import (
	"context"
	"errors"
	"fmt"
)

// Coexistence with other programs that hook the same built-in chains.
//
// kube-proxy (and firewalld, Docker, ...) insert their own jumps at
// position 1 of FORWARD, INPUT, OUTPUT or POSTROUTING. A rule above weir's
// jump sees pod traffic before weir's policy: kube-proxy's KUBE-FORWARD
// accepts every packet marked for masquerade and every established flow,
// so isolated pods would be reachable around weir until its next Apply.
// KeepJumpsFirst puts weir's jumps back on top between Applies; the agent
// calls it every few seconds. kube-proxy checks its own jump with -C and
// inserts it only when missing, so once moved below weir's it stays there:
// the two do not fight.

// KeepJumpsFirst checks that every jump from a built-in chain into weir's
// chains that the last Apply placed is still there once, at position 1, and
// puts back the ones another program pushed down or deleted: for each
// family with something to repair, one restore run that deletes weir's jump
// and inserts it at position 1 again, committed atomically per table, so
// the built-in chain never lacks it. Rules weir did not write are left as
// they are, only below weir's jump. It returns the jumps it moved, as
// "iptables filter FORWARD". Before the first successful Apply, and after a
// failed one (the next Apply places every jump), it checks nothing.
func (a *Applier) KeepJumpsFirst(ctx context.Context) ([]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var moved []string
	var errs []error
	for i := range a.fams {
		f := &a.fams[i]
		if f.last == nil {
			continue
		}
		var ed map[string]edits
		err := a.inNS(func() error {
			var err error
			ed, err = misplacedJumps(f.ipt.List, f.last)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: check jumps: %w", f.restore, err))
			continue
		}
		if len(ed) == 0 {
			continue
		}
		if err := a.restore(ctx, *f, (&familyRules{v6: f.v6}).text(ed)); err != nil {
			errs = append(errs, fmt.Errorf("move jumps back to position 1: %w", err))
			continue
		}
		cmd := "iptables"
		if f.v6 {
			cmd = "ip6tables"
		}
		for _, t := range []string{"filter", "nat"} {
			for _, j := range ed[t].addJump {
				moved = append(moved, cmd+" "+t+" "+j.builtin)
			}
		}
	}
	return moved, errors.Join(errs...)
}

// misplacedJumps lists, through list (go-iptables' List), the built-in
// chains whose weir top chain is in applied (what the last Apply wrote:
// table -> chain -> rules) and returns, per table, the edits that leave
// exactly one jump to it at position 1; tables needing none are absent.
func misplacedJumps(list func(table, chain string) ([]string, error), applied map[string]map[string]string) (map[string]edits, error) {
	out := map[string]edits{}
	for _, t := range []string{"filter", "nat"} {
		var e edits
		for _, b := range builtins[t] {
			j := jump{builtin: b, target: Prefix + b}
			if _, ok := applied[t][j.target]; !ok {
				continue
			}
			rules, err := list(t, b)
			if err != nil {
				return nil, fmt.Errorf("list %s %s: %w", t, b, err)
			}
			del, add := placeJump(rules, j, true)
			e.delJump = append(e.delJump, del...)
			if add {
				e.addJump = append(e.addJump, j)
			}
		}
		if len(e.addJump) > 0 {
			out[t] = e
		}
	}
	return out, nil
}
