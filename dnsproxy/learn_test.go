package dnsproxy

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/weir-cni/weir/ruleset"
)

var (
	pod4  = netip.MustParseAddr("127.0.0.1")
	pod6  = netip.MustParseAddr("::1")
	other = netip.MustParseAddr("127.0.0.2")
	ip    = netip.MustParseAddr
)

// testRules: rule a allows an exact name and a wildcard to pod4 and pod6;
// rule b another name to the other pod only.
func testRules() []Rule {
	return []Rule{
		{Owner: ruleset.Owner{Kind: ruleset.OwnerPolicyRule, Policy: "a", Direction: ruleset.Egress, Tier: ruleset.TierAdmin},
			Set4: "dns4-a", Set6: "dns6-a", Names: []string{"api.example.com", "*.cdn.example.com"}, Pods: []netip.Addr{pod4, pod6}},
		{Owner: ruleset.Owner{Kind: ruleset.OwnerPolicyRule, Policy: "b", Direction: ruleset.Egress, Tier: ruleset.TierAdmin},
			Set4: "dns4-b", Set6: "dns6-b", Names: []string{"other.example.com"}, Pods: []netip.Addr{other}},
	}
}

// testZone is what the test resolvers answer, by name.
var testZone = map[string][]string{
	"api.example.com.":      {"api.example.com. 30 IN A 192.0.2.1", "api.example.com. 30 IN AAAA 2001:db8::1"},
	"www.cdn.example.com.":  {"www.cdn.example.com. 60 IN CNAME edge.cdn.net.", "edge.cdn.net. 20 IN CNAME e1.cdn.net.", "e1.cdn.net. 300 IN A 198.51.100.7"},
	"a.b.cdn.example.com.":  {"a.b.cdn.example.com. 2 IN A 198.51.100.8"},
	"big.cdn.example.com.":  {"big.cdn.example.com. 86400 IN A 198.51.100.10"},
	"cdn.example.com.":      {"cdn.example.com. 30 IN A 198.51.100.9"},
	"evil.example.net.":     {"evil.example.net. 30 IN A 203.0.113.1"},
	"other.example.com.":    {"other.example.com. 30 IN A 192.0.2.50"},
	"shadow.example.com.":   {"shadow.example.com. 30 IN CNAME api.example.com.", "api.example.com. 30 IN A 192.0.2.1"},
	"nxdomain.example.com.": nil,
}

// zoneAnswer is the test resolvers' answer to q.
func zoneAnswer(t testing.TB, q *dns.Msg) *dns.Msg {
	a := new(dns.Msg).SetReply(q)
	name := dns.CanonicalName(q.Question[0].Name)
	lines, ok := testZone[name]
	if !ok || name == "nxdomain.example.com." {
		a.Rcode = dns.RcodeNameError
	}
	a.Answer = rrs(t, lines...)
	return a
}

func newTestProxy(t testing.TB, l Learner) *Proxy {
	t.Helper()
	p, err := New(Config{Learner: l, Registerer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetRules(testRules()); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLearn: what one answer teaches which set, for the name asked, the
// pod asking and its family; answers always go to the pod (not shown).
func TestLearn(t *testing.T) {
	cases := []struct {
		pod  netip.Addr
		name string
		want []call
	}{
		{pod4, "api.example.com", []call{{set: "dns4-a", pod: pod4, addr: ip("192.0.2.1"), ttl: 30 * time.Second}}},
		{pod6, "api.example.com", []call{{set: "dns6-a", pod: pod6, addr: ip("2001:db8::1"), ttl: 30 * time.Second}}},
		{pod4, "API.Example.COM.", []call{{set: "dns4-a", pod: pod4, addr: ip("192.0.2.1"), ttl: 30 * time.Second}}},
		// the CNAME chain's end, with its lowest TTL
		{pod4, "www.cdn.example.com", []call{{set: "dns4-a", pod: pod4, addr: ip("198.51.100.7"), ttl: 20 * time.Second}}},
		// TTL floor and cap
		{pod4, "a.b.cdn.example.com", []call{{set: "dns4-a", pod: pod4, addr: ip("198.51.100.8"), ttl: DefaultMinTTL}}},
		{pod4, "big.cdn.example.com", []call{{set: "dns4-a", pod: pod4, addr: ip("198.51.100.10"), ttl: DefaultMaxTTL}}},
		// the wildcard's apex, a name no rule has, a name allowed only by a CNAME target
		{pod4, "cdn.example.com", nil},
		{pod4, "evil.example.net", nil},
		{pod4, "shadow.example.com", nil},
		{pod4, "nxdomain.example.com", nil},
		// a pod not in the rule allowing the name learns nothing; in its own rule it does
		{other, "api.example.com", nil},
		{other, "other.example.com", []call{{set: "dns4-b", pod: other, addr: ip("192.0.2.50"), ttl: 30 * time.Second}}},
		{pod4, "other.example.com", nil},
	}
	l := &fakeLearner{}
	p := newTestProxy(t, l)
	for _, c := range cases {
		p.learn(c.pod, c.name, zoneAnswer(t, new(dns.Msg).SetQuestion(dns.Fqdn(c.name), dns.TypeA)))
		if got := l.take(); !callsEqual(got, c.want) {
			t.Errorf("%s asks %s: learned %+v, want %+v", c.pod, c.name, got, c.want)
		}
	}
	if got := testutil.ToFloat64(p.metrics.learned); got != 7 {
		t.Errorf("learned addresses: %v, want 7", got)
	}
}

// TestExplainAndExpiry: the index says which lookup let an address in
// until when, and drops the entry (counted) once it expired.
func TestExplainAndExpiry(t *testing.T) {
	p := newTestProxy(t, &fakeLearner{})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	p.learn(pod4, "www.cdn.example.com", zoneAnswer(t, new(dns.Msg).SetQuestion("www.cdn.example.com.", dns.TypeA)))
	want := []Learned{{Owner: testRules()[0].Owner, Set: "dns4-a", Name: "www.cdn.example.com", Answer: "e1.cdn.net",
		Addr: ip("198.51.100.7"), At: now, Expires: now.Add(20 * time.Second)}}
	if got := p.Explain(pod4, ip("198.51.100.7")); !slices.Equal(got, want) {
		t.Fatalf("explain: got %+v, want %+v", got, want)
	}
	if got := p.Explain(pod6, ip("198.51.100.7")); got != nil {
		t.Errorf("explain for another pod: %+v", got)
	}
	now = now.Add(19 * time.Second)
	p.expire()
	if got := p.Explain(pod4, ip("198.51.100.7")); len(got) != 1 || testutil.ToFloat64(p.metrics.expired) != 0 {
		t.Fatalf("before expiry: %+v, %v expired", got, testutil.ToFloat64(p.metrics.expired))
	}
	now = now.Add(time.Second)
	if got := p.Explain(pod4, ip("198.51.100.7")); got != nil {
		t.Errorf("explain after expiry: %+v", got)
	}
	p.expire()
	if n := len(p.index.m); n != 0 || testutil.ToFloat64(p.metrics.expired) != 1 {
		t.Errorf("after expiry: %d entries, %v expired, want 0 and 1", n, testutil.ToFloat64(p.metrics.expired))
	}
}

// TestSetFull: a refused Learn is counted and logged, and not indexed.
func TestSetFull(t *testing.T) {
	p := newTestProxy(t, &fakeLearner{full: map[string]bool{"dns4-a": true}})
	p.learn(pod4, "api.example.com", zoneAnswer(t, new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)))
	if got := testutil.ToFloat64(p.metrics.setFull); got != 1 {
		t.Errorf("set full: %v, want 1", got)
	}
	if got := p.Explain(pod4, ip("192.0.2.1")); got != nil || testutil.ToFloat64(p.metrics.learned) != 0 {
		t.Errorf("a refused address is indexed: %+v", got)
	}
}

// TestSetRulesForgets: a pod that leaves a rule loses its pairs at once
// (and a failed Forget is retried by the next SetRules); a set no rule has
// any more leaves the index without a Forget (the applier deleted it).
func TestSetRulesForgets(t *testing.T) {
	l := &fakeLearner{}
	p := newTestProxy(t, l)
	for _, q := range []struct {
		pod  netip.Addr
		name string
	}{{pod4, "api.example.com"}, {pod4, "www.cdn.example.com"}, {pod6, "api.example.com"}, {other, "other.example.com"}} {
		p.learn(q.pod, q.name, zoneAnswer(t, new(dns.Msg).SetQuestion(dns.Fqdn(q.name), dns.TypeA)))
	}
	l.take()
	rs := testRules()[:1]
	rs[0].Pods = []netip.Addr{pod6}
	l.forgetErr = errors.New("netlink: boom")
	if err := p.SetRules(rs); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("SetRules with a failing Forget: %v", err)
	}
	if got := p.Explain(pod4, ip("192.0.2.1")); len(got) != 1 {
		t.Errorf("pair of a failed Forget not kept: %+v", got)
	}
	if got := p.Explain(other, ip("192.0.2.50")); got != nil {
		t.Errorf("pair of a deleted set still indexed: %+v", got)
	}
	l.forgetErr = nil
	if err := p.SetRules(rs); err != nil {
		t.Fatal(err)
	}
	want := []call{{set: "dns4-a", pod: pod4, addrs: []netip.Addr{ip("192.0.2.1"), ip("198.51.100.7")}}}
	got := l.take()
	for i := range got {
		slices.SortFunc(got[i].addrs, netip.Addr.Compare)
	}
	if !callsEqual(got, want) {
		t.Errorf("forgotten: %+v, want %+v", got, want)
	}
	if got := p.Explain(pod4, ip("192.0.2.1")); got != nil {
		t.Errorf("forgotten pair still indexed: %+v", got)
	}
	if got := p.Explain(pod6, ip("2001:db8::1")); len(got) != 1 {
		t.Errorf("pair of a pod still in the rule: %+v", got)
	}
}

func TestNewRejects(t *testing.T) {
	l := &fakeLearner{}
	for _, c := range []Config{{}, {Learner: l, Port: 70000}, {Learner: l, MinTTL: 2 * time.Hour}, {Learner: l, MaxMessage: 70000}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}
}
