package iptables

import (
	"encoding/binary"
	"flag"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// loadScenario reads a scenario file: ours (testdata/*.yaml) or the
// compiler's (policy/testdata/compile).
var loadScenario = fixtures.LoadScenario[policy.Snapshot]

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestRenderGolden pins the iptables and ip6tables text of every scenario
// in testdata/ to reviewed files.
func TestRenderGolden(t *testing.T) {
	files := glob(t, "testdata/*.yaml")
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata/")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			v4, v6 := Render(policy.Compile(loadScenario(t, file).Snapshot))
			got := v4 + "\n" + v6
			textdiff.Golden(t, strings.TrimSuffix(file, ".yaml")+".rules", got, *update)
		})
	}
}

// TestRenderedVerdicts walks the expected packets of every scenario (ours
// and nft's compile scenarios) through the rendered iptables chains, and
// through ruleset.Trace (which the compiler's tests do for theirs only).
// The DNS steering of domainNames rules has no iptables equivalent: the
// iptables chains give what ruleset.Trace gives without it (unsteered;
// the same ruleset for a scenario without domainNames).
func TestRenderedVerdicts(t *testing.T) {
	files := append(glob(t, "testdata/*.yaml"), glob(t, "../policy/testdata/compile/*.yaml")...)
	for _, file := range files {
		s := loadScenario(t, file)
		rs := policy.Compile(s.Snapshot)
		r := renderBoth(rs)
		for _, tc := range s.Traces {
			t.Run(filepath.Base(file)+"/"+tc.Name, func(t *testing.T) {
				p := tc.Packet(t, policy.DefaultPodInterfacePrefix)
				v, _ := ruleset.Trace(unsteered(rs), p)
				want := fixtures.VerdictName(v)
				v, steps, _ := r.trace(p)
				if got := fixtures.VerdictName(v); got != want {
					t.Errorf("%s: got %s, want %s\n%s", packetString(p), got, want, strings.Join(steps, "\n"))
				}
				if v, steps := ruleset.Trace(rs, p); fixtures.Outcome(v, steps) != tc.Want {
					t.Errorf("%s: ruleset.Trace gives %s, want %s\n%s", packetString(p), fixtures.Outcome(v, steps), tc.Want, ruleset.JoinSteps(steps, "\n"))
				}
			})
		}
	}
}

// unsteered is rs without the base chains the translation does not place
// (the DNS steering of domainNames rules): what the iptables chains give,
// ruleset.Trace gives on it.
func unsteered(rs ruleset.Ruleset) ruleset.Ruleset {
	rs.Chains = slices.DeleteFunc(slices.Clone(rs.Chains), func(c ruleset.Chain) bool { return c.Base != nil && !placed(c) })
	return rs
}

// TestRenderedMatchesNFTTrace is the differential test: for many packets
// per scenario (every pair of interesting addresses, interesting ports,
// three protocols, three conntrack states, forwarded or to the host, with
// or without the marks the ruleset uses), the rendered iptables chains
// give the verdict ruleset.Trace gives on the nftables ruleset, and count
// the packet into the same named counters. The DNS steering of domainNames
// rules has no iptables equivalent: the comparison is with the nftables
// ruleset without it (unsteered), where names, learned by no proxy, allow
// nothing on both sides.
func TestRenderedMatchesNFTTrace(t *testing.T) {
	files := append(glob(t, "testdata/*.yaml"), glob(t, "../policy/testdata/compile/*.yaml")...)
	var met shapes
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			s := loadScenario(t, file)
			rs := policy.Compile(s.Snapshot)
			d := newDifferential(t, unsteered(rs))
			pkts := packets(rs, s)
			if len(pkts) < 50 {
				t.Fatalf("only %d packets generated", len(pkts))
			}
			counted := 0
			for _, p := range pkts {
				v, steps := d.compare(p)
				if len(tracedCounters(steps)) > 0 {
					counted++
				}
				met.add(p, v, steps)
			}
			if len(s.Snapshot.Policies) > 0 && counted == 0 {
				t.Errorf("no packet counted into any of the %d counters", len(rs.Counters))
			}
			t.Logf("%d packets compared, %d counted", len(pkts), counted)
		})
	}
	if met.unclassified == 0 || met.hostDropped == 0 || met.passed == 0 || met.cleared == 0 || met.loggedDeny == 0 {
		t.Errorf("want some of each: %+v", met)
	}
	t.Logf("packets that met each shape: %+v", met)
}

// shapes counts the packets of the differential test that met each shape
// of the compiler's rules a scenario may lack.
type shapes struct {
	unclassified int // the default verdict of unclassified pods dropped it
	hostDropped  int // to the host, the input hook dropped it
	passed       int // a rule marked it and returned (an Admin tier Pass)
	cleared      int // it came with a bit a mark rule without a verdict cleared (the Admin selection chain's first rule)
	loggedDeny   int // a ClusterNetworkPolicy Deny rule dropped it (its log rule, when denied packets are logged, comes first)
}

// add counts packet p, given verdict v after steps.
func (m *shapes) add(p ruleset.Packet, v ruleset.VerdictKind, steps []ruleset.Step) {
	wc := tracedCounters(steps)
	if slices.Contains(wc, policy.CounterUnclassifiedIngress) || slices.Contains(wc, policy.CounterUnclassifiedEgress) {
		m.unclassified++
	}
	if p.ToHost && v == ruleset.VerdictDrop {
		m.hostDropped++
	}
	has := func(f func(r ruleset.Rule) bool) bool {
		return slices.ContainsFunc(steps, func(s ruleset.Step) bool { return f(s.Rule) })
	}
	if has(func(r ruleset.Rule) bool { return r.Mark != nil && r.Verdict.Kind == ruleset.VerdictReturn }) {
		m.passed++
	}
	if has(func(r ruleset.Rule) bool {
		return r.Mark != nil && r.Verdict.Kind == ruleset.VerdictNone && p.Mark&r.Mark.Mask&^r.Mark.Value != 0
	}) {
		m.cleared++
	}
	if has(func(r ruleset.Rule) bool { return r.Owner.Action == "Deny" && r.Verdict.Kind == ruleset.VerdictDrop }) {
		m.loggedDeny++
	}
}

// packets builds the packets of the differential test: addresses are the
// pods', the node's, the traces', and both ends of every address range in
// the ruleset plus their neighbours; ports likewise.
func packets(rs ruleset.Ruleset, s fixtures.Scenario[policy.Snapshot]) []ruleset.Packet {
	addrs := map[netip.Addr]bool{}
	ports := map[uint16]bool{1: true, 80: true, 65535: true}
	for _, p := range s.Snapshot.Pods {
		for _, ip := range p.IPs {
			addrs[ip.Unmap()] = true
		}
		for _, cp := range p.Ports {
			ports[uint16(cp.Port)] = true
		}
	}
	for _, a := range s.Snapshot.Node.Addrs {
		addrs[a.Unmap()] = true
	}
	for _, tc := range s.Traces {
		addrs[tc.Src.Unmap()], addrs[tc.Dst.Unmap()] = true, true
		ports[tc.Port] = true
	}
	for _, set := range rs.Sets {
		for _, e := range set.Elems {
			for i, k := range e.Key {
				switch set.Key[i] {
				case ruleset.TypeIPv4, ruleset.TypeIPv6:
					for _, b := range []string{k.From, k.To} {
						a, _ := netip.AddrFromSlice([]byte(b))
						addrs[a], addrs[a.Prev()], addrs[a.Next()] = true, true, true
					}
				case ruleset.TypePort:
					for _, b := range []string{k.From, k.To} {
						p := uint16(port(b))
						ports[p], ports[p-1], ports[p+1] = true, true, true
					}
				}
			}
		}
	}
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			for _, m := range r.Matches {
				if m.Kind == ruleset.MatchPort {
					ports[m.PortFrom-1], ports[m.PortFrom], ports[m.PortTo], ports[m.PortTo+1] = true, true, true, true
				}
			}
		}
	}
	delete(ports, 0)
	as := sortedKeys(addrs, func(a, b netip.Addr) bool { return a.Less(b) })
	ps := sortedKeys(ports, func(a, b uint16) bool { return a < b })
	vs, ms := vethVariants(rs), markVariants(rs)
	k := 0
	var fwd, host []ruleset.Packet
	for _, src := range as {
		for _, dst := range as {
			if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
				continue
			}
			// To one of the node's addresses: forwarded (as a trace without
			// a route would be) and to the host (the input hook).
			hosts := []bool{false}
			if slices.Contains(s.Snapshot.Node.Addrs, dst) {
				hosts = append(hosts, true)
			}
			for _, port := range ps {
				for _, proto := range []uint8{ruleset.ProtoTCP, ruleset.ProtoUDP, ruleset.ProtoSCTP} {
					for _, st := range []uint32{ruleset.CtNew, ruleset.CtEstablished, ruleset.CtInvalid} {
						for _, toHost := range hosts {
							in, o := vs[k%len(vs)], vs[k/len(vs)%len(vs)]
							mark := ms[k/len(vs)/len(vs)%len(ms)]
							k++
							p := ruleset.Packet{Src: src, Dst: dst, Proto: proto, DPort: port, CtState: st,
								InIface: in.name, InGroup: in.group, OutIface: o.name, OutGroup: o.group, Mark: mark, ToHost: toHost}
							if toHost {
								host = append(host, p)
							} else {
								fwd = append(fwd, p)
							}
						}
					}
				}
			}
		}
	}
	// Keep the run short: a fixed-seed sample of big products.
	return append(sample(fwd, 8000), sample(host, 1000)...)
}

// sample returns at most n of pkts, a fixed-seed sample.
func sample(pkts []ruleset.Packet, n int) []ruleset.Packet {
	if len(pkts) > n {
		rng := rand.New(rand.NewPCG(1, 2))
		rng.Shuffle(len(pkts), func(i, j int) { pkts[i], pkts[j] = pkts[j], pkts[i] })
		pkts = pkts[:n]
	}
	return pkts
}

// veth is an interface a differential packet comes in on or leaves by.
type veth struct {
	name  string
	group uint32
}

// vethVariants are the interfaces packets cycle through, in and out: none
// (a trace without interfaces), pod veths in every group of the ruleset's
// group sets, in the default group and in a group no namespace has, and
// an interface outside the pod prefix in a listed group.
func vethVariants(rs ruleset.Ruleset) []veth {
	pod := fixtures.TraceVeth(policy.DefaultPodInterfacePrefix)
	out := []veth{{}, {pod, 0}, {pod, 7}}
	for _, set := range rs.Sets {
		if len(set.Key) != 1 || set.Key[0] != ruleset.TypeGroup {
			continue
		}
		for _, e := range set.Elems {
			g := binary.BigEndian.Uint32([]byte(e.Key[0].From))
			out = append(out, veth{pod, g}, veth{"eth0", g})
		}
	}
	return out
}

// markVariants are the marks packets arrive with, in turn: none, and each
// bit a rule of rs tests or sets alone (a packet may come with a bit weir
// uses already set by another program).
func markVariants(rs ruleset.Ruleset) []uint32 {
	bits := map[uint32]bool{}
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			for _, m := range r.Matches {
				if m.Kind == ruleset.MatchMark {
					bits[m.Mark] = true
				}
			}
			if r.Mark != nil {
				bits[r.Mark.Mask] = true
			}
		}
	}
	return append([]uint32{0}, sortedKeys(bits, func(a, b uint32) bool { return a < b })...)
}

func sortedKeys[K comparable](m map[K]bool, less func(a, b K) bool) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return less(out[i], out[j]) })
	return out
}
