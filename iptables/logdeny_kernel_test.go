//go:build integration

package iptables

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// loggedScenario holds ClusterNetworkPolicy Deny rules of every shape, with
// denied packets logged at most 10 a second (burst 5).
const loggedScenario = "testdata/tiers-logged.yaml"

// floodSize is how many datagrams a flood sends at once: many more than
// the log's burst.
const floodSize = 40

// TestLoggedDenyDrops applies loggedScenario's policies to the kernel
// test's hosts with nftables and both flavours of iptables and floods each shape of
// logged Deny rule (an inline match, a lookup chain, the input hook, the
// Baseline tier) with floodSize UDP datagrams, which the NetworkPolicies
// would accept without the Deny: no datagram gets through, the rule's
// counter counts each, and the log's rate limit holds back the log of
// most, never their drop.
func TestLoggedDenyDrops(t *testing.T) {
	floods := []testkit.Probe{
		{From: "frontend", To: "web", Proto: "udp", Port: 53},
		{From: "frontend", To: "web", V6: true, Proto: "udp", Port: 53},
		{From: "frontend", To: "db", Proto: "udp", Port: 6379},
		{From: "dev", To: "node", Proto: "udp", Port: 10250},
		{From: "dev", To: "frontend", Proto: "udp", Port: 80},
	}
	rs := policy.Compile(kernelScenario{scenario: loggedScenario}.snapshot(t))
	for i, flavour := range []struct {
		name string // of the iptables-NAME-save commands; "" for nftables
		b    func(*testing.T, *topology) backend
	}{
		{"", nftBackend},
		{"nft", func(t *testing.T, tp *topology) backend { return iptBackend(t, tp, ModeNFT) }},
		{"legacy", func(t *testing.T, tp *topology) backend { return iptBackend(t, tp, ModeLegacy) }},
	} {
		name := "iptables-" + flavour.name
		if flavour.name == "" {
			name = "nftables"
		}
		t.Run(name, func(t *testing.T) {
			tp := kernelTopology(t, fmt.Sprintf("ld%d", i))
			b := flavour.b(t, tp)
			if err := b.apply(context.Background(), rs); err != nil {
				t.Fatal(err)
			}
			for _, p := range floods {
				v, steps := ruleset.Trace(rs, tp.packet(p))
				last := steps[len(steps)-1]
				log := loggingRule(rs, last)
				if v != ruleset.VerdictDrop || log == nil || last.Rule.Counter == "" {
					t.Fatalf("%s: ruleset.Trace: %s by %q, want a drop by a logged Deny rule", p, fixtures.VerdictName(v), last.Rule.String())
				}
				counter := last.Rule.Counter
				logged := func() uint64 { return 0 }
				if flavour.name != "" {
					bin := "iptables-" + flavour.name + "-save"
					if p.V6 {
						bin = "ip6" + bin[2:]
					}
					logged = func() uint64 { return nflogCount(t, save(t, tp.node, bin, "-c"), log.Prefix) }
				}
				counted, loggedBefore := b.counted(t)[counter].Packets, logged()
				if n := flood(t, tp, p); n > 0 {
					t.Errorf("%s: %d of %d datagrams got through", p, n, floodSize)
				}
				if d := b.counted(t)[counter].Packets - counted; d != floodSize {
					t.Errorf("%s: %s counted %d datagrams, want %d", p, counter, d, floodSize)
				}
				if d := logged() - loggedBefore; flavour.name != "" && (d == 0 || d >= floodSize) {
					t.Errorf("%s: %d of %d datagrams logged, want some, under the rate limit", p, d, floodSize)
				}
			}
		})
	}
}

// loggingRule returns the log of the rule the step is: the log rule of the
// same owner and matches just before it in its chain, nil when there is
// none.
func loggingRule(rs ruleset.Ruleset, s ruleset.Step) *ruleset.Log {
	ch, ok := rs.Chain(s.Chain)
	if !ok || s.Index == 0 {
		return nil
	}
	prev := ch.Rules[s.Index-1]
	if prev.Log == nil || prev.Verdict.Kind != ruleset.VerdictNone || prev.Owner != s.Rule.Owner {
		return nil
	}
	return prev.Log
}

// flood sends floodSize datagrams of probe p at once and returns how many
// echoes came back within probeTimeout.
func flood(t *testing.T, tp *topology, p testkit.Probe) int {
	t.Helper()
	conn, err := testkit.DialFrom(tp.hosts[p.From].netns, netip.Addr{}, pick(tp.hosts[p.To], p.V6), p.Proto, p.Port, probeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range floodSize {
		if _, err := conn.Write([]byte("flood " + strconv.Itoa(i))); err != nil {
			t.Fatalf("%s: write: %v", p, err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(probeTimeout))
	buf := make([]byte, 64)
	n := 0
	for ; ; n++ {
		if _, err := conn.Read(buf); err != nil {
			return n
		}
	}
}

// nflogCount sums the packets the NFLOG rules of prefix counted in the
// text of iptables-save -c.
func nflogCount(t *testing.T, text, prefix string) uint64 {
	t.Helper()
	prefix = prefix[:min(len(prefix), maxNflogPrefix)]
	re := regexp.MustCompile(`^\[(\d+):\d+\] .*-j NFLOG --nflog-prefix "` + regexp.QuoteMeta(prefix) + `"`)
	var sum uint64
	found := false
	for _, line := range strings.Split(text, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			sum, found = sum+n, true
		}
	}
	if !found {
		t.Fatalf("no NFLOG rule of prefix %q in:\n%s", prefix, text)
	}
	return sum
}
