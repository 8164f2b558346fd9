//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"

	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// The domainNames world: a resolver and an "internet" of addresses, all in
// the external namespace behind the node. The resolver answers
// api.example.com with an address never given before, so every lookup of
// it is followed by a connection to a pair (pod . address) nothing has
// allowed yet.
var (
	resolver4, resolver6 = netip.MustParseAddr("10.53.0.53"), netip.MustParseAddr("fd00:53::53")
	internet4            = netip.MustParsePrefix("203.0.113.0/24")
	internet6            = netip.MustParsePrefix("2001:db8::/64")
)

// freshPool is how many distinct addresses api.example.com is answered
// with per family (203.0.113.100+i, 2001:db8::1:i).
const freshPool = 100

// dnsZone is the resolver's other names: CNAME, A and AAAA records in
// zone-file form, answered in this order to A and AAAA questions.
var dnsZone = map[string][]string{
	"a.b.cdn.example.com.": {"a.b.cdn.example.com. 30 IN A 203.0.113.60", "a.b.cdn.example.com. 30 IN AAAA 2001:db8::60"},
	"img.cdn.example.com.": {"img.cdn.example.com. 30 IN CNAME img.edge.example.net.",
		"img.edge.example.net. 30 IN CNAME e7.edge.example.net.", "e7.edge.example.net. 30 IN A 203.0.113.61"},
	"e7.edge.example.net.":   {"e7.edge.example.net. 30 IN A 203.0.113.61"},
	"short.cdn.example.com.": {"short.cdn.example.com. 1 IN A 203.0.113.62"},
	"cdn.example.com.":       {"cdn.example.com. 30 IN A 203.0.113.63"},
	"api.example.org.":       {"api.example.org. 30 IN A 203.0.113.64"},
	"keep.cdn.example.com.":  {"keep.cdn.example.com. 5 IN A 203.0.113.65"},
	"gone.cdn.example.com.":  {"gone.cdn.example.com. 30 IN A 203.0.113.66"},
	"stop.cdn.example.com.":  {"stop.cdn.example.com. 30 IN A 203.0.113.67"},
	"kept.cdn.example.com.":  {"kept.cdn.example.com. 60 IN A 203.0.113.68"},
	"edit.cdn.example.com.":  {"edit.cdn.example.com. 30 IN A 203.0.113.69"},
}

// domainPolicies allow the client pods api.example.com and
// *.cdn.example.com (Admin, priority 10) and deny every pod the internet
// (Admin, priority 20).
const (
	saasPolicy = `
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: saas}
spec:
  tier: Admin
  priority: 10
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}}
  egress:
  - {name: saas names, action: Accept, to: [{domainNames: [api.example.com, "*.cdn.example.com"]}]}
`
	noInternetPolicy = `
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: no-internet}
spec:
  tier: Admin
  priority: 20
  subject: {namespaces: {}}
  egress:
  - {action: Deny, to: [{networks: [203.0.113.0/24, "2001:db8::/64"]}]}
`
	domainPolicies = saasPolicy + "---" + noInternetPolicy
)

// testResolver answers from dnsZone and api.example.com from the fresh
// pool, and records who asked what.
type testResolver struct {
	mu    sync.Mutex
	fresh int
	seen  []seenQuery
}

// seenQuery is one question the resolver got and its source address.
type seenQuery struct {
	name string
	from netip.Addr
}

func (r *testResolver) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	a := new(dns.Msg).SetReply(q)
	if len(q.Question) != 1 {
		_ = w.WriteMsg(a.SetRcode(q, dns.RcodeFormatError))
		return
	}
	question := q.Question[0]
	name := dns.CanonicalName(question.Name)
	r.mu.Lock()
	r.seen = append(r.seen, seenQuery{name, addrOf(w.RemoteAddr())})
	records, ok := dnsZone[name]
	if name == "api.example.com." {
		records, ok = r.freshRecords(), true
		r.fresh++
	}
	r.mu.Unlock()
	if !ok {
		a.SetRcode(q, dns.RcodeNameError)
	}
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		if t := rr.Header().Rrtype; t == dns.TypeCNAME || t == question.Qtype {
			a.Answer = append(a.Answer, rr)
		}
	}
	_ = w.WriteMsg(a)
}

// freshRecords are api.example.com's records of the next fresh address.
func (r *testResolver) freshRecords() []string {
	i := r.fresh % freshPool
	return []string{fmt.Sprintf("api.example.com. 30 IN A 203.0.113.%d", 100+i),
		fmt.Sprintf("api.example.com. 30 IN AAAA 2001:db8::1:%d", i)}
}

// asked says whether the resolver got a question for name, and from where.
func (r *testResolver) asked(name string) []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	var from []netip.Addr
	for _, s := range r.seen {
		if s.name == dns.CanonicalName(name) {
			from = append(from, s.from)
		}
	}
	return from
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// addInternet gives the external namespace the resolver's and the
// internet's addresses (on its loopback) and routes them there from the
// node, and serves the resolver on port 53 (UDP and TCP) until the test
// ends.
func (c *cluster) addInternet() *testResolver {
	t := c.t
	var local []netip.Addr
	local = append(local, resolver4, resolver6)
	for i := 1; i < 255; i++ {
		local = append(local, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
	}
	for i := range freshPool {
		local = append(local, netip.MustParseAddr(fmt.Sprintf("2001:db8::1:%d", i)))
	}
	local = append(local, netip.MustParseAddr("2001:db8::60"), netip.MustParseAddr("2001:db8::99"))
	if err := c.ext.Do(func(ns.NetNS) error { return addLoopbackAddrs(local) }); err != nil {
		t.Fatalf("internet addresses: %v", err)
	}
	routed := []netip.Prefix{internet4, internet6, netip.PrefixFrom(resolver4, 32), netip.PrefixFrom(resolver6, 128)}
	if err := c.node.Do(func(ns.NetNS) error { return routeToExternal(routed) }); err != nil {
		t.Fatalf("routes to the internet: %v", err)
	}
	r := &testResolver{}
	testkit.ServeDNS(t, c.ext, r)
	return r
}

func addLoopbackAddrs(addrs []netip.Addr) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	for _, a := range addrs {
		addr, _ := netlink.ParseAddr(hostCIDR(a.String()))
		addr.Flags |= 0x02 // IFA_F_NODAD
		if err := netlink.AddrAdd(lo, addr); err != nil {
			return fmt.Errorf("add %s: %w", a, err)
		}
	}
	return nil
}

func routeToExternal(prefixes []netip.Prefix) error {
	ext, err := netlink.LinkByName("ext0")
	if err != nil {
		return err
	}
	for _, p := range prefixes {
		gw := net.ParseIP(extLink4)
		if p.Addr().Is6() {
			gw = net.ParseIP(extLink6)
		}
		dst, _ := netlink.ParseIPNet(p.String())
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: ext.Attrs().Index, Dst: dst, Gw: gw}); err != nil {
			return fmt.Errorf("route %s: %w", p, err)
		}
	}
	return nil
}

// dnsClient is one pod asking the resolver of its address's family.
type dnsClient struct {
	ref      string
	netns    ns.NetNS
	src, dns netip.Addr
}

// client resolves the pod ref's family (v6 or not) on the test goroutine.
func (c *cluster) client(ref string, v6 bool) dnsClient {
	n, src := c.endpoint(ref, v6)
	r := resolver4
	if v6 {
		r = resolver6
	}
	return dnsClient{ref: ref, netns: n, src: src, dns: r}
}

// lookup asks for name over network (udp or tcp), A or AAAA by the
// client's family, and returns the answer's addresses (the end of its
// CNAME chain).
func (d dnsClient) lookup(network, name string) ([]netip.Addr, error) {
	qtype := dns.TypeA
	if d.src.Is6() {
		qtype = dns.TypeAAAA
	}
	conn, err := testkit.DialFrom(d.netns, d.src, d.dns, network, 53, probeWait)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(probeWait))
	co := &dns.Conn{Conn: conn}
	if err := co.WriteMsg(new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype)); err != nil {
		return nil, fmt.Errorf("%s query %s from %s: %w", network, name, d.ref, err)
	}
	r, err := co.ReadMsg()
	if err != nil {
		return nil, fmt.Errorf("%s query %s from %s: %w", network, name, d.ref, err)
	}
	var addrs []netip.Addr
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			addrs = append(addrs, netip.MustParseAddr(rr.A.String()))
		case *dns.AAAA:
			addrs = append(addrs, netip.MustParseAddr(rr.AAAA.String()))
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s query %s from %s: no address in %v", network, name, d.ref, r.Answer)
	}
	return addrs, nil
}

// connect is one TCP exchange with the echo on port 80 of addr, each step
// bounded by probeWait, or by allowWait when it should pass (want): a
// loaded machine may be slow to run it. A connection whose SYN was sent
// again fails all the same: the address was not open at once (its first
// SYN was dropped), which 1 s, the first retransmission timeout, caught
// for every connection before.
func (d dnsClient) connect(addr netip.Addr, want bool) error {
	wait := probeTimeout(testkit.Probe{Want: want})
	conn, err := testkit.DialFrom(d.netns, d.src, addr, "tcp", 80, wait)
	if err != nil {
		return err
	}
	defer conn.Close()
	if n, err := testkit.Retransmits(conn.(*net.TCPConn)); err != nil || n > 0 {
		return fmt.Errorf("tcp %s -> %s port 80: SYN sent again (%d segments, %v): not open at once", d.src, addr, n, err)
	}
	return testkit.Echoes(conn, addr, wait)
}

// lookupConnect looks name up and connects to its first address at once;
// it returns that address and the first error.
func (d dnsClient) lookupConnect(network, name string) (netip.Addr, error) {
	addrs, err := d.lookup(network, name)
	if err != nil {
		return netip.Addr{}, err
	}
	if err := d.connect(addrs[0], true); err != nil {
		return addrs[0], fmt.Errorf("%s right after its %s answer to %s: %w", addrs[0], network, name, err)
	}
	return addrs[0], nil
}

// waitDNS waits (bounded) until a lookup from d gets an answer (through
// the proxy when d is selected).
func (d dnsClient) waitDNS(t *testing.T) {
	t.Helper()
	var err error
	for range 20 {
		if _, err = d.lookup("udp", "a.b.cdn.example.com"); err == nil {
			return
		}
	}
	t.Fatalf("no DNS answer for %s: %v", d.ref, err)
}

// checkConnect fails t unless connecting from d to addr is allowed as want.
func checkConnect(t *testing.T, d dnsClient, addr netip.Addr, want bool, why string) {
	t.Helper()
	err := d.connect(addr, want)
	if got := err == nil; got != want {
		t.Errorf("%s -> %s tcp/80 (%s): allowed=%v, want %v (%v)", d.ref, addr, why, got, want, err)
	}
}

// checkLookup fails t unless looking name up from d and connecting to its
// first address at once is allowed as want; it returns the address.
func checkLookup(t *testing.T, d dnsClient, network, name string, want bool) netip.Addr {
	t.Helper()
	addrs, err := d.lookup(network, name)
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	checkConnect(t, d, addrs[0], want, "right after the "+network+" answer to "+name)
	return addrs[0]
}

func domainPods() ([]*tpod, map[string]map[string]string) {
	client := map[string]string{"app": "client"}
	return []*tpod{
		{ns: "prod", name: "c1", labels: client, ips: []string{"172.17.0.31", "fd00:17::31"}},
		{ns: "prod", name: "c2", labels: client, ips: []string{"172.17.0.32", "fd00:17::32"}},
		{ns: "prod", name: "c3", labels: client, ips: []string{"172.17.0.33", "fd00:17::33"}},
		{ns: "prod", name: "bystander", ips: []string{"172.17.0.40", "fd00:17::40"}},
	}, map[string]map[string]string{"prod": {}}
}

// TestDomainNamesEgress runs issue 14's netns scenario through the real
// weir-agent (nftables, DNS proxy, --dns-min-ttl 1s): lookups of allowed
// names open exactly the answered addresses for exactly the asking pod,
// at once, until the TTL or a policy edit or delete; with the agent down
// they stay (and survive its restart) while the pods' DNS fails.
func TestDomainNamesEgress(t *testing.T) {
	pods, nsLabels := domainPods()
	c := newPolicyCluster(t, pods, nsLabels, withAgentArgs("--dns-min-ttl", "1s"))
	r := c.addInternet()
	st := c.setPolicies(domainPolicies)
	if len(st.Problems)+len(st.DataplaneProblems) > 0 {
		t.Fatalf("agent reports problems: %v %v", st.Problems, st.DataplaneProblems)
	}
	c1, c2, c3 := c.client("prod/c1", false), c.client("prod/c2", false), c.client("prod/c3", false)
	by := c.client("prod/bystander", false)
	for _, d := range []dnsClient{c1, c2, c3, by, c.client("prod/c1", true)} {
		d.waitDNS(t)
	}
	for _, step := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"lookup then connect at once, several pods, UDP and TCP, both families", func(t *testing.T) { lookupsOpenAtOnce(t, c) }},
		{"addresses no answer of an allowed name gave stay denied", func(t *testing.T) {
			checkConnect(t, c1, netip.MustParseAddr("203.0.113.99"), false, "never answered")
			checkConnect(t, c.client("prod/c1", true), netip.MustParseAddr("2001:db8::99"), false, "never answered")
			checkLookup(t, c1, "udp", "cdn.example.com", false) // the wildcard's apex
			checkLookup(t, c1, "udp", "api.example.org", false)
		}},
		{"wildcard names of one or more labels, any case", func(t *testing.T) {
			checkLookup(t, c2, "udp", "a.b.cdn.example.com", true)
			checkLookup(t, c3, "tcp", "A.B.CDN.Example.COM", true)
			checkLookup(t, c.client("prod/c2", true), "udp", "a.b.cdn.example.com", true)
		}},
		{"a CNAME chain: its final address counts, for the pod that asked the allowed name", func(t *testing.T) {
			addr := checkLookup(t, c1, "udp", "img.cdn.example.com", true)
			explainLearned(t, c, addr)
			checkConnect(t, c2, addr, false, "c2 asked nothing")
			checkLookup(t, c2, "udp", "e7.edge.example.net", false) // the chain's end is not an allowed name
		}},
		{"a pod the policy does not select gains nothing", func(t *testing.T) { bystanderGainsNothing(t, c) }},
		{"a short TTL expires", func(t *testing.T) {
			addr := checkLookup(t, c3, "udp", "short.cdn.example.com", true)
			time.Sleep(2 * time.Second) // TTL 1 s, --dns-min-ttl 1s
			checkConnect(t, c3, addr, false, "after the answer's 1 s TTL")
		}},
		{"editing the policy removes the learned addresses at once", func(t *testing.T) {
			c.t = t
			addr := checkLookup(t, c1, "udp", "edit.cdn.example.com", true)
			c.setPolicies(strings.Replace(domainPolicies, "api.example.com,", "api.example.com, www.example.com,", 1))
			checkConnect(t, c1, addr, false, "policy edited")
			checkLookup(t, c1, "udp", "edit.cdn.example.com", true)
			c.setPolicies(domainPolicies)
		}},
		{"deleting the policy removes the learned addresses at once", func(t *testing.T) {
			c.t = t
			addr := checkLookup(t, c1, "udp", "gone.cdn.example.com", true)
			c.setPolicies(noInternetPolicy)
			checkConnect(t, c1, addr, false, "policy deleted")
			checkLookup(t, c1, "udp", "api.example.com", false)
			c.setPolicies(domainPolicies)
			c1.waitDNS(t)
			checkConnect(t, c1, addr, false, "policy back, nothing asked since")
		}},
		{"agent stopped: DNS of the selected pods fails, learned addresses stay until their TTL and over a restart", func(t *testing.T) {
			c.t = t
			kept := checkLookup(t, c1, "udp", "kept.cdn.example.com", true)
			agentStopped(t, c, r)
			c.spawnAgent()
			c.waitSynced(0)
			checkConnect(t, c1, kept, true, "learned before the agent stopped, 60 s TTL, after its restart")
			c1.waitDNS(t)
			checkLookup(t, c1, "tcp", "api.example.com", true)
		}},
	} {
		if !t.Run(step.name, step.run) {
			t.Logf("step %q failed", step.name)
		}
	}
}

// explainLearned: weirctl explain of c1 to addr, the end of the CNAME
// chain of img.cdn.example.com c1 just looked up, is ALLOWED by the saas
// rule's learned-address set and names the lookup; c2's, which asked
// nothing, is DENIED and names none.
func explainLearned(t *testing.T, c *cluster, addr netip.Addr) {
	weirctl := filepath.Join(t.TempDir(), "weirctl")
	if err := testkit.GoBuild(context.Background(), "github.com/weir-cni/weir/cmd/weirctl", weirctl); err != nil {
		t.Fatal(err)
	}
	explain := func(src string) (string, int) {
		out, err := exec.Command(weirctl, "--socket", c.sock, "explain", src, addr.String(), "80").CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("weirctl: %v", err)
		}
		if exit != nil {
			return string(out), exit.ExitCode()
		}
		return string(out), 0
	}
	out, rc := explain("prod/c1")
	t.Logf("weirctl explain prod/c1 %s 80:\n%s", addr, out)
	lookup := regexp.MustCompile(`(?m)^  learned from DNS \(Admin cnp/saas egress rule 0 'saas names': Accept, set dns4-\w+\):\n` +
		`    img\.cdn\.example\.com \(CNAME chain to e7\.edge\.example\.net\) answered ` + regexp.QuoteMeta(addr.String()) + ` at \S+, expires \S+ \(TTL 30s\)$`)
	if rc != 0 || !strings.Contains(out, ": ALLOWED\n") || !regexp.MustCompile(`@dns4-\w+ .*accept`).MatchString(out) || !lookup.MatchString(out) {
		t.Errorf("weirctl explain prod/c1 %s: exit %d, want 0, ALLOWED by the learned-address set and the lookup named:\n%s", addr, rc, out)
	}
	if out, rc := explain("prod/c2"); rc != 3 || !strings.Contains(out, ": DENIED\n") || strings.Contains(out, "learned from DNS") {
		t.Errorf("weirctl explain prod/c2 %s: exit %d, want 3, DENIED with nothing learned:\n%s", addr, rc, out)
	}
}

// lookupsOpenAtOnce: each client pod, 8 times over, looks api.example.com
// up (UDP and TCP, A from its IPv4 address and AAAA from its IPv6 one) and
// connects to the fresh address right after the answer: no failure.
func lookupsOpenAtOnce(t *testing.T, c *cluster) {
	var clients []dnsClient
	for _, ref := range []string{"prod/c1", "prod/c2", "prod/c3"} {
		clients = append(clients, c.client(ref, false), c.client(ref, true))
	}
	const reps = 8
	errs := make([][]error, len(clients))
	addrs := make([][]netip.Addr, len(clients))
	testkit.Parallel(len(clients), len(clients), func(i int) {
		for range reps {
			for _, network := range []string{"udp", "tcp"} {
				a, err := clients[i].lookupConnect(network, "api.example.com")
				errs[i] = append(errs[i], err)
				addrs[i] = append(addrs[i], a)
			}
		}
	})
	seen := map[netip.Addr]bool{}
	for i, d := range clients {
		for j, err := range errs[i] {
			if err != nil {
				t.Errorf("%s (%s): %v", d.ref, d.src, err)
			}
			if a := addrs[i][j]; a.IsValid() && seen[a] {
				t.Errorf("%s got %s again: the resolver's pool is too small for a fresh address per lookup", d.ref, a)
			}
			seen[addrs[i][j]] = true
		}
	}
	t.Logf("%d lookups, each followed at once by a connection to its fresh address", len(clients)*reps*2)
}

// bystanderGainsNothing: c1's lookup lets neither the bystander (not
// selected) nor c2 (selected, asked nothing) in; the bystander's own
// lookup (not steered: it reaches the resolver directly) lets it in
// nowhere either.
func bystanderGainsNothing(t *testing.T, c *cluster) {
	c1, c2, by := c.client("prod/c1", false), c.client("prod/c2", false), c.client("prod/bystander", false)
	addr := checkLookup(t, c1, "udp", "api.example.com", true)
	checkConnect(t, by, addr, false, "c1 asked, the bystander is not selected")
	checkConnect(t, c2, addr, false, "c1 asked, not c2")
	own := checkLookup(t, by, "udp", "api.example.com", false)
	checkConnect(t, by, own, false, "its own answer")
}

// agentStopped kills the agent: the selected pods' DNS fails, over UDP and
// TCP, dropped by the dns-proxy-down rule, and never reaches the resolver; the bystander's still works; an
// address learned before stays allowed until its TTL (5 s), then not.
func agentStopped(t *testing.T, c *cluster, r *testResolver) {
	c1 := c.client("prod/c1", false)
	learned := time.Now()
	addr := checkLookup(t, c1, "udp", "keep.cdn.example.com", true)
	c.stopAgent()
	checkConnect(t, c1, addr, true, "learned before the agent stopped")
	for _, network := range []string{"udp", "tcp"} {
		if _, err := c1.lookup(network, "stop.cdn.example.com"); err == nil {
			t.Errorf("%s DNS of c1 answered with the agent stopped", network)
		}
	}
	if n := proxyDownDrops(t, c); n < 2 {
		t.Errorf("counter %s: %d packets, want the UDP query and the TCP SYN at least", policy.CounterDNSProxyDown, n)
	}
	if from := r.asked("stop.cdn.example.com"); len(from) > 0 {
		t.Errorf("the resolver got c1's query from %v with the agent stopped: the proxy was bypassed", from)
	}
	if _, err := c.client("prod/bystander", false).lookup("udp", "stop.cdn.example.com"); err != nil {
		t.Errorf("the bystander's DNS (never steered) with the agent stopped: %v", err)
	}
	if time.Since(learned) > 4*time.Second {
		t.Fatalf("too slow to check the address within its TTL (%v)", time.Since(learned))
	}
	checkConnect(t, c1, addr, true, "learned before the agent stopped, within its TTL")
	time.Sleep(time.Until(learned.Add(6500 * time.Millisecond)))
	checkConnect(t, c1, addr, false, "after its 5 s TTL, agent stopped")
}

// proxyDownDrops reads the packets of the node's dns-proxy-down counter.
func proxyDownDrops(t *testing.T, c *cluster) int {
	out := testkit.Nft(t, c.node, "", "list", "counter", "inet", ruleset.TableName, policy.CounterDNSProxyDown)
	m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no packets in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
