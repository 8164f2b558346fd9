package dnsproxy

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The API's examples (network-policy-api v1beta1 DomainName), and the
// edges of whole labels, case and trailing dots.
func TestPatternMatches(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"kubernetes.io", "kubernetes.io", true},
		{"kubernetes.io", "KUBERNETES.IO.", true},
		{"kubernetes.io.", "kubernetes.io", true},
		{"Kubernetes.IO", "kubernetes.io", true},
		{"kubernetes.io", "www.kubernetes.io", false},
		{"kubernetes.io", "kubernetes.io.evil.com", false},
		{"*.kubernetes.io", "www.kubernetes.io", true},
		{"*.kubernetes.io", "latest.blog.kubernetes.io", true},
		{"*.kubernetes.io", "WWW.Kubernetes.IO.", true},
		{"*.kubernetes.io.", "www.kubernetes.io", true},
		{"*.kubernetes.io", "kubernetes.io", false},
		{"*.kubernetes.io", "xkubernetes.io", false},
		{"*.kubernetes.io", "www.kubernetes.io.evil.com", false},
		{"*.kubernetes.io", `www\.kubernetes.io`, false}, // one label "www.kubernetes" under io
		{"*.cdn.example.com", "a.b.cdn.example.com", true},
		{"*.cdn.example.com", "cdn.example.com", false},
		{"*.cdn.example.com", "example.com", false},
	}
	for _, c := range cases {
		if got := parsePattern(c.pattern).matches(dns.CanonicalName(c.name)); got != c.want {
			t.Errorf("%q matches %q: got %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

func rrs(t testing.TB, lines ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		out = append(out, rr)
	}
	return out
}

func TestAddresses(t *testing.T) {
	a := netip.MustParseAddr
	cases := []struct {
		name   string
		answer []dns.RR
		final  string
		want   []found
	}{
		{"A and AAAA", rrs(t, "q.example. 30 IN A 192.0.2.1", "Q.Example. 40 IN AAAA 2001:db8::1", "q.example. 30 IN A 192.0.2.1"),
			"q.example.", []found{{a("192.0.2.1"), 30}, {a("2001:db8::1"), 40}}},
		{"records of other names", rrs(t, "other.example. 30 IN A 192.0.2.9", "q.example. 30 IN TXT \"x\""), "q.example.", nil},
		{"CNAME chain: the lowest TTL on the way", rrs(t,
			"b.example. 300 IN CNAME c.example.", "q.example. 60 IN CNAME b.example.",
			"c.example. 600 IN A 192.0.2.3", "b.example. 10 IN A 192.0.2.99"),
			"c.example.", []found{{a("192.0.2.3"), 60}}},
		{"CNAME to a short TTL", rrs(t, "q.example. 3600 IN CNAME c.example.", "c.example. 7 IN AAAA 2001:db8::7"),
			"c.example.", []found{{a("2001:db8::7"), 7}}},
		{"CNAME loop", rrs(t, "q.example. 30 IN CNAME b.example.", "b.example. 30 IN CNAME q.example.", "q.example. 30 IN A 192.0.2.1"),
			"q.example.", nil},
		{"CNAME chain without an end", rrs(t, "q.example. 30 IN CNAME gone.example."), "gone.example.", nil},
		{"other class", rrs(t, "q.example. 30 CH A 192.0.2.1"), "q.example.", nil},
	}
	for _, c := range cases {
		final, got := addresses(c.answer, "Q.example")
		if final != c.final || !slices.Equal(got, c.want) {
			t.Errorf("%s: got %s %v, want %s %v", c.name, final, got, c.final, c.want)
		}
	}
}

func TestAddressesChainBound(t *testing.T) {
	chain := func(n int) []dns.RR {
		var lines []string
		for i := range n {
			lines = append(lines, dns.Fqdn(label(i))+" 30 IN CNAME "+dns.Fqdn(label(i+1)))
		}
		return rrs(t, append(lines, dns.Fqdn(label(n))+" 30 IN A 192.0.2.1")...)
	}
	if _, got := addresses(chain(maxChain), label(0)); len(got) != 1 {
		t.Errorf("chain of %d CNAMEs: got %v, want the address", maxChain, got)
	}
	if _, got := addresses(chain(maxChain+1), label(0)); got != nil {
		t.Errorf("chain of %d CNAMEs: got %v, want none", maxChain+1, got)
	}
}

func label(i int) string { return "n" + string(rune('a'+i)) + ".example" }

func TestClampTTL(t *testing.T) {
	for _, c := range []struct {
		ttl  uint32
		want time.Duration
	}{{0, 5 * time.Second}, {4, 5 * time.Second}, {60, time.Minute}, {86400, time.Hour}} {
		if got := clampTTL(c.ttl, 5*time.Second, time.Hour); got != c.want {
			t.Errorf("clamp %d: got %v, want %v", c.ttl, got, c.want)
		}
	}
}
