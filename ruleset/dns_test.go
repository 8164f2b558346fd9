package ruleset

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// dnsRuleset is a table with what domainNames bring: a Dynamic set with
// timeouts and a size, a prerouting chain after DNAT whose rule hands DNS
// queries to a local socket (TProxy) and drops them when none listens,
// and an input chain accepting what it marked.
func dnsRuleset(learned []Elem) Ruleset {
	pod := Range{string(netip.MustParseAddr("10.0.0.1").AsSlice()), string(netip.MustParseAddr("10.0.0.1").AsSlice())}
	udp53 := Match{Kind: MatchPort, Proto: ProtoUDP, PortFrom: 53, PortTo: 53}
	pods := Match{Kind: MatchLookup, Fields: []Field{FieldIPSaddr}, Set: "pods"}
	return Ruleset{
		Sets: []Set{
			{Name: "learned", Key: []Type{TypeIPv4, TypeIPv4}, Timeout: true, Size: 4, Dynamic: true, Elems: learned},
			{Name: "pods", Key: []Type{TypeIPv4}, Elems: []Elem{{Key: []Range{pod}}}},
		},
		Chains: []Chain{
			{Name: "fwd", Base: &Base{Type: "filter", Hook: HookForward}, Rules: []Rule{
				{Matches: []Match{{Kind: MatchLookup, Fields: []Field{FieldIPSaddr, FieldIPDaddr}, Set: "learned"}}, Verdict: Verdict{Kind: VerdictAccept}},
				{Matches: []Match{pods}, Verdict: Verdict{Kind: VerdictDrop}},
			}},
			{Name: "in", Base: &Base{Type: "filter", Hook: HookInput}, Rules: []Rule{
				{Matches: []Match{{Kind: MatchMark, Mark: 0x4}}, Verdict: Verdict{Kind: VerdictAccept}, Owner: Owner{Kind: OwnerDNSProxy}},
				{Verdict: Verdict{Kind: VerdictDrop}},
			}},
			{Name: "steer", Base: &Base{Type: "filter", Hook: HookPrerouting, Priority: PriorityDstNAT + 20}, Rules: []Rule{
				{Matches: []Match{{Kind: MatchOifname, IfPrefix: "eth"}}, Verdict: Verdict{Kind: VerdictDrop}},
				{Matches: []Match{udp53, pods}, Mark: &MarkSet{Mask: 0x4, Value: 0x4}, TProxy: &TProxy{Port: 15353},
					Verdict: Verdict{Kind: VerdictAccept}, Owner: Owner{Kind: OwnerDNSProxy}},
				{Matches: []Match{udp53, pods}, Counter: "down", Verdict: Verdict{Kind: VerdictDrop}, Owner: Owner{Kind: OwnerDNSProxyDown}},
			}},
		},
	}
}

// TestRenderDNSObjects pins the text of the new objects as nft lists
// them: a set's size before its flags, no element of a Dynamic set, the
// tproxy statement after the mark, a priority no name is within 10 of as
// a number.
func TestRenderDNSObjects(t *testing.T) {
	learned := []Elem{{Key: []Range{{"\x0a\x00\x00\x01", "\x0a\x00\x00\x01"}, {"\x01\x02\x03\x04", "\x01\x02\x03\x04"}}}}
	text := dnsRuleset(learned).String()
	for _, want := range []string{
		"\tset learned {\n\t\ttype ipv4_addr . ipv4_addr\n\t\tsize 4\n\t\tflags timeout\n\t}\n",
		"\t\ttype filter hook prerouting priority -80; policy accept;\n",
		`udp dport 53 ip saddr @pods meta mark set meta mark | 0x00000004 tproxy ip to :15353 accept comment "DNS query to the proxy"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered text lacks %q:\n%s", want, text)
		}
	}
	if got := (TProxy{IPv6: true, Port: 1}).String(); got != "tproxy ip6 to :1" {
		t.Errorf("IPv6 tproxy renders %q", got)
	}
	interval := Set{Name: "s", Key: []Type{TypeIPv4}, Interval: true, Timeout: true}
	var b strings.Builder
	interval.render(&b)
	if !strings.Contains(b.String(), "\t\tflags interval,timeout\n") {
		t.Errorf("flags of an interval set with timeouts: %q", b.String())
	}
}

// TestPriorityNames pins nft's naming of base chain priorities: within 10
// of a standard priority the hook knows, else the number.
func TestPriorityNames(t *testing.T) {
	cases := []struct {
		hook Hook
		prio int
		want string
	}{
		{HookPrerouting, -300, "raw"}, {HookPrerouting, -90, "dstnat + 10"}, {HookPrerouting, -89, "-89"},
		{HookPrerouting, -80, "-80"}, {HookPrerouting, -111, "-111"}, {HookPrerouting, -160, "mangle - 10"},
		{HookForward, 1, "filter + 1"}, {HookForward, 100, "100"}, {HookInput, -100, "-100"},
		{HookPostrouting, 100, "srcnat"}, {HookInput, 60, "security + 10"},
	}
	for _, tc := range cases {
		if got := (Base{Type: "filter", Hook: tc.hook, Priority: tc.prio}).priorityString(); got != tc.want {
			t.Errorf("%s priority %d renders %q, want %q", tc.hook, tc.prio, got, tc.want)
		}
	}
}

// TestDiffLeavesDynamicElements pins that Diff never adds or deletes the
// elements of a Dynamic set, and that a change of its timeout, size or
// dynamism is a change of definition.
func TestDiffLeavesDynamicElements(t *testing.T) {
	learned := []Elem{{Key: []Range{{"\x0a\x00\x00\x01", "\x0a\x00\x00\x01"}, {"\x01\x02\x03\x04", "\x01\x02\x03\x04"}}}}
	if ch := Diff(dnsRuleset(nil), dnsRuleset(learned)); !ch.Empty() {
		t.Errorf("elements of a Dynamic set changed the diff: %s", ch)
	}
	for name, edit := range map[string]func(*Set){
		"timeout": func(s *Set) { s.Timeout = false },
		"size":    func(s *Set) { s.Size = 5 },
		"dynamic": func(s *Set) { s.Dynamic = false },
	} {
		r := dnsRuleset(nil)
		edit(&r.Sets[0])
		if ch := Diff(dnsRuleset(nil), r); !ch.Full {
			t.Errorf("a change of %s is not a full change: %s", name, ch)
		}
	}
}

// TestTraceTProxy pins how Trace follows a packet a TProxy rule takes:
// prerouting knows no output interface yet, the marked packet meets the
// input hook (not the forward hook), and the trace ends delivered to the
// socket; with no socket the rule stops and the next rule drops. A
// Dynamic set's Elems admit nothing (its elements are the data plane's).
func TestTraceTProxy(t *testing.T) {
	learned := []Elem{{Key: []Range{{"\x0a\x00\x00\x01", "\x0a\x00\x00\x01"}, {"\x01\x02\x03\x04", "\x01\x02\x03\x04"}}}}
	r := dnsRuleset(learned)
	query := Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.96.0.10"), Proto: ProtoUDP, DPort: 53, OutIface: "eth0"}
	v, steps := Trace(r, query)
	want := "steer: udp dport 53 ip saddr @pods meta mark set meta mark | 0x00000004 tproxy ip to :15353 accept comment \"DNS query to the proxy\"\n" +
		"in: meta mark & 0x00000004 == 0x00000004 accept comment \"DNS query to the proxy\"\n" +
		"steer: delivered to the local socket on port 15353 (tproxy)"
	if got := JoinSteps(steps, "\n"); v != VerdictAccept || got != want || steps[len(steps)-1].Kind != StepTProxy {
		t.Errorf("query: %v\n%s\nwant accept\n%s", v, got, want)
	}
	down := query
	down.ProxyDown = true
	if v, steps := Trace(r, down); v != VerdictDrop || steps[len(steps)-1].Rule.Counter != "down" {
		t.Errorf("query with the proxy down: %v\n%s\nwant a drop by the next rule", v, JoinSteps(steps, "\n"))
	}
	other := Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("1.2.3.4"), Proto: ProtoTCP, DPort: 443}
	if v, steps := Trace(r, other); v != VerdictDrop {
		t.Errorf("a Dynamic set's element admitted a packet: %v\n%s", v, JoinSteps(steps, "\n"))
	}
}

// TestTraceLearned pins how Trace sees a Dynamic set's elements: through
// Packet.Learned, asked for the set and the lookup's addresses in the
// order of its fields (pod, then learned address). A pair learned in the
// set looked up accepts by that rule; one learned in another set, or
// none, leaves the packet to the drop.
func TestTraceLearned(t *testing.T) {
	r := dnsRuleset(nil)
	pod, addr := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("1.2.3.4")
	var asked []string
	holds := func(holding string) func(string, []netip.Addr) bool {
		return func(set string, key []netip.Addr) bool {
			asked = append(asked, fmt.Sprint(set, " ", key))
			return set == holding && slices.Equal(key, []netip.Addr{pod, addr})
		}
	}
	p := Packet{Src: pod, Dst: addr, Proto: ProtoTCP, DPort: 443, Learned: holds("learned")}
	v, steps := Trace(r, p)
	want := "fwd: ip saddr . ip daddr @learned accept"
	if got := JoinSteps(steps, "\n"); v != VerdictAccept || got != want || steps[0].Index != 0 {
		t.Errorf("learned pair: %v\n%s\nwant accept\n%s", v, got, want)
	}
	if !slices.Equal(asked, []string{"learned [10.0.0.1 1.2.3.4]"}) {
		t.Errorf("Learned asked %q, want the set and the pair pod, address", asked)
	}
	for name, learned := range map[string]func(string, []netip.Addr) bool{"another set's pair": holds("other"), "no Learned": nil} {
		p.Learned = learned
		if v, steps := Trace(r, p); v != VerdictDrop {
			t.Errorf("%s: %v\n%s\nwant drop", name, v, JoinSteps(steps, "\n"))
		}
	}
}
