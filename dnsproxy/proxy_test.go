package dnsproxy

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestLearnBeforeAnswer: the answer reaches the pod only after the Learn
// of its address has returned.
func TestLearnBeforeAnswer(t *testing.T) {
	l := &fakeLearner{entered: make(chan call, 1), release: make(chan struct{})}
	_, port := startProxy(t, Config{Learner: l}, startUpstream(t))
	answered := make(chan *dns.Msg, 1)
	go func() {
		r, err := ask("udp", pod4, port, "api.example.com", dns.TypeA, 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		answered <- r
	}()
	select {
	case c := <-l.entered:
		if c.set != "dns4-a" || c.pod != pod4 || c.addr != ip("192.0.2.1") {
			t.Errorf("learning %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no Learn")
	}
	select {
	case <-answered:
		t.Fatal("the answer reached the pod before its Learn returned")
	case <-time.After(300 * time.Millisecond):
	}
	close(l.release)
	select {
	case r := <-answered:
		if r == nil || len(r.Answer) != 2 {
			t.Errorf("answer: %v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer after the Learn returned")
	}
}

// TestTransports: UDP and TCP, IPv4 and IPv6 pods: each gets the
// resolver's answer from the address and port it asked, and learns what
// its rule allows. Two queries share one TCP connection.
func TestTransports(t *testing.T) {
	l := &fakeLearner{}
	p, port := startProxy(t, Config{Learner: l}, startUpstream(t))
	cases := []struct {
		network string
		pod     netip.Addr
		qtype   uint16
		want    call
	}{
		{"udp", pod4, dns.TypeA, call{set: "dns4-a", pod: pod4, addr: ip("192.0.2.1"), ttl: 30 * time.Second}},
		{"tcp", pod4, dns.TypeA, call{set: "dns4-a", pod: pod4, addr: ip("192.0.2.1"), ttl: 30 * time.Second}},
		{"udp", pod6, dns.TypeAAAA, call{set: "dns6-a", pod: pod6, addr: ip("2001:db8::1"), ttl: 30 * time.Second}},
		{"tcp", pod6, dns.TypeAAAA, call{set: "dns6-a", pod: pod6, addr: ip("2001:db8::1"), ttl: 30 * time.Second}},
	}
	for _, c := range cases {
		r, err := ask(c.network, c.pod, port, "api.example.com", c.qtype, 5*time.Second)
		if err != nil || len(r.Answer) != 2 {
			t.Fatalf("%s from %s: %v %v", c.network, c.pod, r, err)
		}
		if got := l.take(); !callsEqual(got, []call{c.want}) {
			t.Errorf("%s from %s: learned %+v, want %+v", c.network, c.pod, got, c.want)
		}
	}
	conn, err := (&dns.Client{Net: "tcp"}).Dial(netip.AddrPortFrom(pod4, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, name := range []string{"api.example.com.", "www.cdn.example.com."} {
		if r, _, err := new(dns.Client).ExchangeWithConn(new(dns.Msg).SetQuestion(name, dns.TypeA), conn); err != nil || len(r.Answer) == 0 {
			t.Fatalf("%s on a shared TCP connection: %v %v", name, r, err)
		}
	}
	if got := l.take(); len(got) != 2 {
		t.Errorf("shared TCP connection learned %+v", got)
	}
	for tr, want := range map[string]float64{"udp": 3, "tcp": 4} { // the readiness probe is a UDP query
		if got := testutil.ToFloat64(p.metrics.queries.WithLabelValues(tr)); got < want {
			t.Errorf("%s queries: %v, want at least %v", tr, got, want)
		}
	}
}

// TestSetFullAnswerDelivered: the pod gets its answer though its rule's
// set is full; the refusal is counted.
func TestSetFullAnswerDelivered(t *testing.T) {
	p, port := startProxy(t, Config{Learner: &fakeLearner{full: map[string]bool{"dns4-a": true}}}, startUpstream(t))
	if r, err := ask("udp", pod4, port, "api.example.com", dns.TypeA, 5*time.Second); err != nil || len(r.Answer) != 2 {
		t.Fatalf("answer: %v %v", r, err)
	}
	if got := testutil.ToFloat64(p.metrics.setFull); got != 1 {
		t.Errorf("set full: %v, want 1", got)
	}
}

// TestDropped: what is not one well-formed query of a bounded size is
// dropped unanswered and counted, and so is a query the resolver leaves
// unanswered.
func TestDropped(t *testing.T) {
	p, port := startProxy(t, Config{Learner: &fakeLearner{}, MaxMessage: 512, UpstreamTimeout: 300 * time.Millisecond},
		startUpstream(t))
	response, _ := new(dns.Msg).SetReply(new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)).Pack()
	update, _ := new(dns.Msg).SetUpdate("example.com.").Pack()
	twoQuestions := new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)
	twoQuestions.Question = append(twoQuestions.Question, twoQuestions.Question[0])
	two, _ := twoQuestions.Pack()
	server := netip.AddrPortFrom(pod4, uint16(port)).String()
	for _, c := range []struct {
		name, network, reason string
		msg                   []byte
	}{
		{"garbage", "udp", dropMalformed, []byte{1, 2, 3}},
		{"oversized", "udp", dropOversized, make([]byte, 513)},
		{"response", "udp", dropNotQuery, response},
		{"update", "udp", dropNotQuery, update},
		{"two questions", "udp", dropNotQuery, two},
		{"oversized over TCP", "tcp", dropOversized, make([]byte, 513)},
		{"garbage over TCP", "tcp", dropMalformed, []byte{1, 2, 3}},
	} {
		before := testutil.ToFloat64(p.metrics.dropped.WithLabelValues(c.reason))
		conn, err := net.Dial(c.network, server)
		if err != nil {
			t.Fatal(err)
		}
		co := &dns.Conn{Conn: conn}
		if _, err := co.Write(c.msg); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := co.Read(make([]byte, 1024)); err == nil {
			t.Errorf("%s: answered %d bytes", c.name, n)
		}
		_ = conn.Close()
		waitCount(t, c.name, p.metrics.dropped.WithLabelValues(c.reason), before+1)
	}
}

// TestTruncatedPassed: a truncated UDP answer cut inside a record reaches
// the pod as the resolver sent it; nothing is learned from it.
func TestTruncatedPassed(t *testing.T) {
	l := &fakeLearner{}
	_, port := startProxy(t, Config{Learner: l}, startUpstream(t))
	conn, err := net.Dial("udp", netip.AddrPortFrom(pod4, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := new(dns.Msg).SetQuestion(cutName, dns.TypeA)
	b, _ := q.Pack()
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 1024)
	n, err := conn.Read(got)
	if err != nil {
		t.Fatal(err)
	}
	want := cutAnswer(t, q)
	if new(dns.Msg).Unpack(want) == nil {
		t.Fatal("the cut answer unpacks")
	}
	if !bytes.Equal(got[:n], want) {
		t.Errorf("got %x, want the resolver's %x", got[:n], want)
	}
	if calls := l.take(); calls != nil {
		t.Errorf("learned %+v from a cut answer", calls)
	}
}

// TestUpstreamTimeout: a resolver slower than UpstreamTimeout loses the
// query, counted.
func TestUpstreamTimeout(t *testing.T) {
	p, port := startProxy(t, Config{Learner: &fakeLearner{}, UpstreamTimeout: slowAnswer / 2}, startUpstream(t))
	if r, err := ask("udp", pod4, port, "slow.example.com", dns.TypeA, slowAnswer); err == nil {
		t.Errorf("answered after the upstream timeout: %v", r)
	}
	waitCount(t, "upstream timeout", p.metrics.dropped.WithLabelValues(dropUpstream), 1)
}

// TestNotSteered: a query sent to the proxy's own port, not steered there
// by tproxy, is dropped rather than forwarded to the proxy again.
func TestNotSteered(t *testing.T) {
	p := newTestProxy(t, &fakeLearner{})
	if _, ok := p.upstream(netip.AddrPortFrom(pod4, DefaultPort)); ok {
		t.Error("a query to the proxy's port is forwarded")
	}
	if to, ok := p.upstream(netip.MustParseAddrPort("10.96.0.10:53")); !ok || to != netip.MustParseAddrPort("10.96.0.10:53") {
		t.Errorf("a steered query goes to %s %v", to, ok)
	}
	if got := testutil.ToFloat64(p.metrics.dropped.WithLabelValues(dropNotSteered)); got != 1 {
		t.Errorf("not steered: %v, want 1", got)
	}
}

// TestConcurrent: pods asking at once while the rules change keep getting
// answers (run with -race).
func TestConcurrent(t *testing.T) {
	p, port := startProxy(t, Config{Learner: &fakeLearner{}}, startUpstream(t))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			rs := testRules()
			if i%2 == 1 {
				rs[0].Pods = rs[0].Pods[1:]
			}
			if err := p.SetRules(rs); err != nil {
				t.Error(err)
			}
			_ = p.Explain(pod4, ip("192.0.2.1"))
		}
	}()
	errs := make(chan error, 64)
	for i := range cap(errs) {
		go func() {
			network := []string{"udp", "tcp"}[i%2]
			// A stub resolver asks again over UDP: a loaded machine may
			// drop a datagram of 64 sent at once.
			var err error
			for try := 0; try < 3; try++ {
				if _, err = ask(network, []netip.Addr{pod4, pod6}[i/2%2], port, "api.example.com", dns.TypeA, 3*time.Second); err == nil || network == "tcp" {
					break
				}
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	<-done
}

// waitCount waits for the counter c to reach want.
func waitCount(t *testing.T, what string, c prometheus.Collector, want float64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for testutil.ToFloat64(c) < want {
		if time.Now().After(deadline) {
			t.Errorf("%s: counted %v, want %v", what, testutil.ToFloat64(c), want)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
