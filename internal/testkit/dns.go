package testkit

import (
	"net"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/miekg/dns"
)

// ServeDNS runs h on port 53, UDP and TCP, on every address of both
// families of netns until the test ends: a resolver for tests of the DNS
// path.
func ServeDNS(t testing.TB, netns ns.NetNS, h dns.Handler) {
	t.Helper()
	var servers []*dns.Server
	err := netns.Do(func(ns.NetNS) error {
		pc, err := net.ListenPacket("udp", ":53")
		if err != nil {
			return err
		}
		l, err := net.Listen("tcp", ":53")
		if err != nil {
			pc.Close()
			return err
		}
		servers = []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}}
		return nil
	})
	if err != nil {
		t.Fatalf("resolver: %v", err)
	}
	for _, s := range servers {
		go func() { _ = s.ActivateAndServe() }()
		t.Cleanup(func() { _ = s.Shutdown() })
	}
}
