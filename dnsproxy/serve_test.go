package dnsproxy

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// slowAnswer is how long the test resolvers take to answer slow.example.com.
const slowAnswer = 1500 * time.Millisecond

// cutName is a name the test resolvers answer with a truncated answer cut
// inside its last record (cutAnswer).
const cutName = "cut.cdn.example.com."

func cutAnswer(t testing.TB, q *dns.Msg) []byte {
	a := new(dns.Msg).SetReply(q)
	a.Truncated = true
	a.Answer = rrs(t, cutName+" 30 IN A 198.51.100.11", cutName+" 30 IN A 198.51.100.12")
	b, err := a.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b[:len(b)-2]
}

// startUpstream runs a test resolver answering from testZone on UDP and
// TCP at one loopback port until the test ends.
func startUpstream(t testing.TB) netip.AddrPort {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		switch dns.CanonicalName(q.Question[0].Name) {
		case "slow.example.com.":
			time.Sleep(slowAnswer)
		case cutName:
			_, _ = w.Write(cutAnswer(t, q))
			return
		}
		_ = w.WriteMsg(zoneAnswer(t, q))
	})
	for range 20 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		l, err := net.Listen("tcp4", addr.String())
		if err != nil {
			_ = pc.Close()
			continue
		}
		for _, s := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: l, Handler: handler}} {
			go func() { _ = s.ActivateAndServe() }()
			t.Cleanup(func() { _ = s.Shutdown() })
		}
		return addr
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return netip.AddrPort{}
}

// freePort returns a port free, when asked, for UDP and TCP on every
// address of both families.
func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", l.Addr().String())
		_ = l.Close()
		if err == nil {
			_ = pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// startProxy serves a Proxy of cfg with testRules on a free port, every
// query going to the upstream, until the test ends, and returns once it
// answers. Its transparent sockets need CAP_NET_ADMIN.
func startProxy(t testing.TB, cfg Config, upstream netip.AddrPort) (*Proxy, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("transparent sockets need root (CAP_NET_ADMIN)")
	}
	cfg.Port = freePort(t)
	cfg.Upstream = func(netip.AddrPort) netip.AddrPort { return upstream }
	cfg.Registerer = prometheus.NewRegistry()
	cfg.Log = slog.New(slog.DiscardHandler)
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetRules(testRules()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := ask("udp", pod4, cfg.Port, "evil.example.net", dns.TypeA, 200*time.Millisecond); err == nil {
			return p, cfg.Port
		}
		if time.Now().After(deadline) {
			t.Fatal("the proxy does not answer")
		}
	}
}

// ask sends a query for name over network from the address from to the
// proxy's port at from (the proxy sees from as the pod, and from:port as
// the resolver); the client takes only an answer from there.
func ask(network string, from netip.Addr, port int, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	local := net.Addr(&net.UDPAddr{IP: from.AsSlice()})
	if network == "tcp" {
		local = &net.TCPAddr{IP: from.AsSlice()}
	}
	c := dns.Client{Net: network, Timeout: timeout, Dialer: &net.Dialer{LocalAddr: local, Timeout: timeout}}
	server := netip.AddrPortFrom(pod4, uint16(port))
	if from.Is6() {
		server = netip.AddrPortFrom(pod6, uint16(port))
	}
	r, _, err := c.Exchange(new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype), server.String())
	return r, err
}
