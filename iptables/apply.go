package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/containernetworking/plugins/pkg/ns"
	goipt "github.com/coreos/go-iptables/iptables"
	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/ruleset"
)

// Mode is the iptables flavour: which kernel API the binaries program.
type Mode string

// Modes. ModeAuto uses the flavour of the host's `iptables` command.
const (
	ModeAuto   Mode = ""
	ModeLegacy Mode = "legacy"
	ModeNFT    Mode = "nf_tables"
)

// builtins lists the built-in chains of each table weir may jump from.
var builtins = map[string][]string{
	"raw":    {"PREROUTING"},
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
}

// tableNames are the tables weir may own chains in, in the order they are
// written.
var tableNames = []string{"raw", "filter", "nat"}

// Option configures New.
type Option func(*config)

type config struct {
	netns  string
	mode   Mode
	noIPv6 bool
	wait   int
}

// WithNetNS programs the network namespace at path (e.g. /var/run/netns/X)
// instead of the caller's.
func WithNetNS(path string) Option { return func(c *config) { c.netns = path } }

// WithMode forces the legacy or nf_tables flavour of the binaries.
func WithMode(m Mode) Option { return func(c *config) { c.mode = m } }

// WithoutIPv6 programs iptables only (hosts without ip6tables).
func WithoutIPv6() Option { return func(c *config) { c.noIPv6 = true } }

// WithWait sets how many seconds to wait for the xtables lock (default 5).
func WithWait(seconds int) Option { return func(c *config) { c.wait = seconds } }

// Applier owns the WEIR-* chains of iptables and ip6tables in one network
// namespace. Each Apply rewrites them with one restore run per family.
// Apply and Counters may run concurrently (a metrics scrape during a sync):
// Applies run one at a time, and Counters never makes one wait for the
// kernel (see Counters).
type Applier struct {
	cfg     config
	mode    Mode
	nsenter string
	// mu serializes Applies and guards fams and counters. Counters holds it
	// only to copy what it reads by, never while a binary runs.
	mu   sync.Mutex
	fams []family
	// counters are the named counters of the last ruleset every family
	// applied (ruleset.Ruleset.Counters).
	counters []ruleset.Counter
	// layouts counts the restore runs that may change which named counter
	// each rule of the kernel counts into (family.counted): one is counted
	// before its restore starts, so a Counters read that saw the same count
	// before and after running iptables-save read a kernel laid out as it
	// copied.
	layouts atomic.Uint64
}

type family struct {
	v6      bool
	ipt     *goipt.IPTables
	restore string
	save    string // the matching save binary (its path when found), for Counters
	// last is what the last successful Apply wrote: table -> chain ->
	// rules. Chains that still hold exactly that are not rewritten.
	last map[string]map[string]string
	// counted is, for the same Apply, table -> chain -> the named counter
	// each rule counts into ("" for none), in rule order. countedKnown is
	// false before the first Apply and after a failed one.
	counted      map[string]map[string][]string
	countedKnown bool
	// applies counts Apply runs: every fullEvery-th one rewrites every
	// chain, repairing anything edited behind weir's back.
	applies int
}

// fullEvery is how often Apply rewrites every chain even if unchanged.
const fullEvery = 30

// New detects the iptables flavour and the matching restore binaries. It
// changes nothing in the kernel.
func New(opts ...Option) (*Applier, error) {
	a := &Applier{cfg: config{wait: 5}}
	for _, o := range opts {
		o(&a.cfg)
	}
	if a.cfg.netns != "" {
		p, err := exec.LookPath("nsenter")
		if err != nil {
			return nil, fmt.Errorf("iptables backend in netns %s: %w", a.cfg.netns, err)
		}
		a.nsenter = p
	}
	mode := a.cfg.mode
	if mode == ModeAuto {
		m, err := hostMode()
		if err != nil {
			return nil, err
		}
		mode = m
	}
	if mode != ModeLegacy && mode != ModeNFT {
		return nil, fmt.Errorf("iptables mode %q: want %q or %q", mode, ModeLegacy, ModeNFT)
	}
	a.mode = mode
	for _, v6 := range []bool{false, true} {
		if v6 && a.cfg.noIPv6 {
			continue
		}
		f, err := newFamily(v6, mode, a.cfg.wait)
		if err != nil {
			return nil, err
		}
		a.fams = append(a.fams, f)
	}
	return a, nil
}

// Mode reports the flavour in use.
func (a *Applier) Mode() Mode { return a.mode }

// hostMode reads the flavour of the host's default iptables command.
func hostMode() (Mode, error) {
	path, err := exec.LookPath("iptables")
	if err != nil {
		return "", fmt.Errorf("find iptables: %w", err)
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", path, err)
	}
	if strings.Contains(string(out), "nf_tables") {
		return ModeNFT, nil
	}
	return ModeLegacy, nil
}

// newFamily finds iptables-MODE and iptables-MODE-restore (or ip6tables),
// falling back to the plain names when they are of that flavour.
func newFamily(v6 bool, mode Mode, wait int) (family, error) {
	base, proto := "iptables", goipt.ProtocolIPv4
	if v6 {
		base, proto = "ip6tables", goipt.ProtocolIPv6
	}
	suffix := "-legacy"
	if mode == ModeNFT {
		suffix = "-nft"
	}
	cmd, restore := base+suffix, base+suffix+"-restore"
	if _, err := exec.LookPath(cmd); err != nil {
		if m, merr := hostMode(); merr != nil || m != mode {
			return family{}, fmt.Errorf("no %s binaries: %w", mode, err)
		}
		cmd, restore = base, base+"-restore"
	}
	rpath, err := exec.LookPath(restore)
	if err != nil {
		return family{}, fmt.Errorf("find %s: %w", restore, err)
	}
	// Only Counters needs the save binary: without it, Counters says so.
	save := strings.TrimSuffix(restore, "-restore") + "-save"
	if spath, err := exec.LookPath(save); err == nil {
		save = spath
	}
	ipt, err := goipt.New(goipt.IPFamily(proto), goipt.Path(cmd), goipt.Timeout(wait))
	if err != nil {
		return family{}, fmt.Errorf("open %s: %w", cmd, err)
	}
	if ipt.Proto() != proto {
		return family{}, fmt.Errorf("%s: unexpected protocol", cmd)
	}
	return family{v6: v6, ipt: ipt, restore: rpath, save: save}, nil
}

var _ dataplane.Applier = (*Applier)(nil)
var _ dataplane.JumpKeeper = (*Applier)(nil)

// Apply makes the WEIR-* chains of every family hold rs: one restore run
// per family, which the kernel commits atomically per table. Chains weir no
// longer needs are deleted in the same run, and the jump from each built-in
// chain is (re)placed at position 1. ctx ends the restore processes. It
// returns what of rs the translation left out, once for both families.
func (a *Applier) Apply(ctx context.Context, rs ruleset.Ruleset) ([]dataplane.Problem, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	var problems []dataplane.Problem
	for i := range a.fams {
		r := build(rs, a.fams[i].v6)
		for _, p := range r.problems {
			if !slices.Contains(problems, p) {
				problems = append(problems, p)
			}
		}
		if err := a.apply(ctx, &a.fams[i], r); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	a.counters = rs.Counters
	return problems, nil
}

// Close releases nothing: the Applier holds no socket or descriptor
// between runs. The kernel keeps the chains.
func (a *Applier) Close() error { return nil }

// Remove deletes every WEIR-* chain and the jumps to them.
func (a *Applier) Remove(ctx context.Context) error {
	_, err := a.Apply(ctx, ruleset.Ruleset{})
	return err
}

// HasChains reports whether any family holds a weir chain (one left by an
// earlier run, say). Tables that cannot be listed hold none.
func (a *Applier) HasChains() (bool, error) {
	found := false
	for _, f := range a.fams {
		err := a.inNS(func() error {
			for _, t := range tableNames {
				chains, err := f.ipt.ListChains(t)
				if err != nil {
					continue
				}
				for _, c := range chains {
					found = found || strings.HasPrefix(c, Prefix)
				}
			}
			return nil
		})
		if err != nil {
			return false, err
		}
	}
	return found, nil
}

// apply writes one family. Only chains whose rules differ from the last
// successful Apply are declared (flushed) and rewritten; a failed run leaves
// the kernel as it was and makes the next Apply rewrite everything.
func (a *Applier) apply(ctx context.Context, f *family, r *familyRules) error {
	f.applies++
	if f.applies%fullEvery == 0 {
		f.last = nil
	}
	var ed map[string]edits
	err := a.inNS(func() error {
		var err error
		ed, err = plan(f.ipt, r, f.last)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: read chains: %w", f.restore, err)
	}
	now := contents(r)
	for _, t := range r.tables {
		e := ed[t.name]
		e.same = map[string]bool{}
		for name, rules := range now[t.name] {
			if old, ok := f.last[t.name][name]; ok && old == rules && e.present[name] {
				e.same[name] = true
			}
		}
		ed[t.name] = e
	}
	text := r.text(ed)
	next := counted(r)
	if strings.Contains(text, "\nCOMMIT\n") { // else nothing to change
		if !f.countedKnown || !sameCounted(f.counted, next) {
			a.layouts.Add(1)
		}
		if err := a.restore(ctx, *f, text); err != nil {
			// A run commits table by table: the kernel may hold part of
			// r, so neither last nor counted describes it any more.
			f.last, f.counted, f.countedKnown = nil, nil, false
			a.layouts.Add(1)
			return err
		}
	}
	f.last, f.counted, f.countedKnown = now, next, true
	return nil
}

// contents is every chain's rules as text, per table.
func contents(r *familyRules) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, t := range r.tables {
		out[t.name] = map[string]string{}
		for _, c := range t.chains {
			var b strings.Builder
			for _, rl := range c.rules {
				b.WriteString(strings.Join(rl.args(), " "))
				b.WriteByte('\n')
			}
			out[t.name][c.name] = b.String()
		}
	}
	return out
}

// plan compares what the kernel holds with r: weir chains to delete, and
// jumps to delete or insert. last (nil on a full round) is what the previous
// Apply wrote; with it the chain list is not read back from the kernel,
// which costs a dump of the whole table.
func plan(ipt *goipt.IPTables, r *familyRules, last map[string]map[string]string) (map[string]edits, error) {
	want := map[string]*table{}
	for _, t := range r.tables {
		want[t.name] = t
	}
	out := map[string]edits{}
	for _, name := range tableNames {
		t := want[name]
		if t == nil {
			t = &table{name: name, byName: map[string]*chain{}}
		}
		var chains []string
		if last != nil {
			for c := range last[name] {
				chains = append(chains, c)
			}
		} else {
			var err error
			chains, err = ipt.ListChains(name)
			if err != nil {
				if want[name] == nil {
					continue // table unavailable and unused
				}
				return nil, fmt.Errorf("list chains of %s: %w", name, err)
			}
		}
		e := edits{present: map[string]bool{}}
		for _, c := range chains {
			e.present[c] = true
			if strings.HasPrefix(c, Prefix) && t.byName[c] == nil {
				e.stale = append(e.stale, c)
			}
		}
		sort.Strings(e.stale)
		for _, b := range builtins[name] {
			top := Prefix + b
			wanted := t.byName[top] != nil
			if !e.present[top] && !wanted {
				continue
			}
			rules, err := ipt.List(name, b)
			if err != nil {
				return nil, fmt.Errorf("list %s %s: %w", name, b, err)
			}
			del, add := placeJump(rules, jump{builtin: b, target: top}, wanted)
			e.delJump = append(e.delJump, del...)
			if add {
				e.addJump = append(e.addJump, jump{builtin: b, target: top})
			}
		}
		if len(e.stale)+len(e.delJump)+len(e.addJump) > 0 || want[name] != nil {
			out[name] = e
		}
	}
	return out, nil
}

// placeJump decides how to leave exactly one jump j at position 1 of the
// built-in chain listed in rules (or none when not wanted).
func placeJump(rules []string, j jump, wanted bool) (del []jump, add bool) {
	line := "-A " + j.builtin + " " + strings.Join(j.spec(), " ")
	pos, found, first := 0, 0, false
	for _, r := range rules {
		if !strings.HasPrefix(r, "-A ") {
			continue
		}
		pos++
		if strings.TrimSpace(r) == line {
			found++
			first = first || pos == 1
		}
	}
	if wanted && found == 1 && first {
		return nil, false
	}
	// -D deletes the first match: delete every copy, insert one again.
	for i := 0; i < found; i++ {
		del = append(del, j)
	}
	return del, wanted
}

// restore feeds text to the family's restore binary, inside the netns.
func (a *Applier) restore(ctx context.Context, f family, text string) error {
	_, err := a.run(ctx, strings.NewReader(text), f.restore, "--noflush", "--wait", fmt.Sprint(a.cfg.wait))
	return err
}

// run runs an iptables binary inside the netns and returns its output.
func (a *Applier) run(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	name := args[0]
	if a.nsenter != "" {
		args = append([]string{a.nsenter, "--net=" + a.cfg.netns, "--"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// inNS runs fn in the configured network namespace.
func (a *Applier) inNS(fn func() error) error {
	if a.cfg.netns == "" {
		return fn()
	}
	return ns.WithNetNSPath(a.cfg.netns, func(ns.NetNS) error { return fn() })
}
