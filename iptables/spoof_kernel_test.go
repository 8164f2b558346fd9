//go:build integration

package iptables

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/weir-cni/weir/policy"
	"golang.org/x/sys/unix"
)

// spoofPort is where the sinks of the anti-spoofing test listen.
const spoofPort = 7000

// Node addresses of the anti-spoofing test, on the node namespace's lo.
var spoofNodeAddrs = []string{"192.168.1.10", "fd00:ff::1"}

// spoofHosts are the pods of the anti-spoofing test.
var spoofHosts = []struct {
	key string
	ips []string
}{
	{"attacker", []string{"10.0.0.10", "fd00:10::10"}},
	{"trusted", []string{"10.0.0.20", "fd00:10::20"}},
	{"db", []string{"10.0.0.30", "fd00:10::30"}},
}

// spoofPolicy admits into db only the trusted pod: a spoofed trusted
// source is what an attacker would use to get in.
const spoofPolicy = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: default, name: db-from-trusted}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress: [{from: [{podSelector: {matchLabels: {role: trusted}}}]}]
`

// spoofSend is one datagram: from host key from, with source src (one of
// its own addresses, a spoofed one, or a link-local one), to the node or to
// a host.
type spoofSend struct {
	name     string
	from     string
	src      string // "own", "trusted" (spoofed) or "link-local"
	to       string // host key or "node"
	v6       bool
	arrives  bool
	spoofing bool // counted as spoofed
}

var spoofSends = []spoofSend{
	{"pod's own traffic to an admitting pod flows", "trusted", "own", "db", false, true, false},
	{"pod's own traffic to an admitting pod flows", "trusted", "own", "db", true, true, false},
	{"pod's own traffic to its node flows", "attacker", "own", "node", false, true, false},
	{"pod's own traffic to its node flows", "attacker", "own", "node", true, true, false},
	{"policy still refuses the attacker's own address", "attacker", "own", "db", false, false, false},
	{"spoofed admitted peer into an isolated pod is dropped", "attacker", "trusted", "db", false, false, true},
	{"spoofed admitted peer into an isolated pod is dropped", "attacker", "trusted", "db", true, false, true},
	{"spoofed source to the node is dropped", "attacker", "trusted", "node", false, false, true},
	{"spoofed source to the node is dropped", "attacker", "trusted", "node", true, false, true},
	{"IPv6 link-local source (NDP, RS, MLD) still reaches the node", "attacker", "link-local", "node", true, true, false},
}

// TestSpoofedSourcesDropped wires an attacker, a trusted pod and a db that
// admits only the trusted pod to three node namespaces (nftables, iptables
// nf_tables and legacy), with IPv4 rp_filter off, and sends single UDP
// datagrams: the attacker's datagrams with the trusted pod's source (bound
// with IP_FREEBIND, as a pod with CAP_NET_RAW could forge) reach neither db
// nor the node and count in policy.CounterSpoofed, while genuine traffic, and
// an IPv6 link-local source to the node, arrive and count nothing.
func TestSpoofedSourcesDropped(t *testing.T) {
	for i, kind := range backendKinds {
		t.Run(kind, func(t *testing.T) {
			tp := newTopology(t, fmt.Sprintf("s%d", i))
			for _, a := range spoofNodeAddrs {
				run(t, "ip", "-n", tp.node, "addr", "add", a, "dev", "lo")
			}
			for _, h := range spoofHosts {
				tp.addHost(t, h.key, h.ips...)
			}
			b := kindBackend(t, tp, kind)
			rs := policy.Compile(spoofSnapshot(t))
			if err := b.apply(context.Background(), rs); err != nil {
				t.Fatalf("apply: %v", err)
			}
			nodeNS, err := ns.GetNS(tp.nodePath)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = nodeNS.Close() })
			sinks := map[string]*sink{"node": startSink(t, nodeNS), "db": startSink(t, tp.hosts["db"].netns)}
			before := b.counted(t)[policy.CounterSpoofed].Packets

			var spoofed uint64
			for k, s := range spoofSends {
				src, dst := spoofAddrs(tp, s)
				tag := fmt.Sprintf("send-%d", k)
				if err := sendFrom(tp.hosts[s.from].netns, src, dst, tag); err != nil {
					t.Fatalf("%s: send %s -> %s: %v", s.name, src, dst, err)
				}
				if s.spoofing {
					spoofed++
				}
			}
			time.Sleep(probeTimeout)
			for k, s := range spoofSends {
				src, dst := spoofAddrs(tp, s)
				got, ok := sinks[s.to].received(fmt.Sprintf("send-%d", k))
				switch {
				case ok != s.arrives:
					t.Errorf("%s (%s -> %s): arrived=%v, want %v", s.name, src, dst, ok, s.arrives)
				case ok && got != src.WithZone(""):
					t.Errorf("%s: arrived from %s, want %s", s.name, got, src)
				}
			}
			after := b.counted(t)[policy.CounterSpoofed].Packets
			if after-before != spoofed {
				t.Errorf("counter %s counted %d packets, want %d (the spoofed datagrams)", policy.CounterSpoofed, after-before, spoofed)
			}
		})
	}
}

// spoofSnapshot is the test's pods, all in namespace default labelled
// role=KEY, with the node addresses and spoofPolicy.
func spoofSnapshot(t *testing.T) policy.Snapshot {
	s := kernelSnapshot(t, spoofPolicy)
	s.Node.Addrs = nil
	for _, a := range spoofNodeAddrs {
		s.Node.Addrs = append(s.Node.Addrs, netip.MustParseAddr(a))
	}
	s.Pods = nil
	for _, h := range spoofHosts {
		p := policy.Pod{Namespace: "default", Name: h.key, Node: "n1", Labels: map[string]string{"role": h.key}}
		for _, ip := range h.ips {
			p.IPs = append(p.IPs, netip.MustParseAddr(ip))
		}
		s.Pods = append(s.Pods, p)
	}
	return s
}

// spoofAddrs resolves a send's source and destination.
func spoofAddrs(tp *topology, s spoofSend) (src, dst netip.Addr) {
	switch s.src {
	case "own":
		src = pick(tp.hosts[s.from], s.v6)
	case "trusted":
		src = pick(tp.hosts["trusted"], s.v6)
	case "link-local":
		src = netip.MustParseAddr("fe80::10").WithZone("eth0")
	}
	if s.to == "node" {
		dst = netip.MustParseAddr(spoofNodeAddrs[0])
		if s.v6 {
			dst = netip.MustParseAddr(spoofNodeAddrs[1])
		}
	} else {
		dst = pick(tp.hosts[s.to], s.v6)
	}
	return src, dst
}

// sendFrom sends one UDP datagram carrying tag from inside netns with
// source src, which need not be an address of the namespace: the socket is
// IP_TRANSPARENT / IPV6_TRANSPARENT, which CAP_NET_RAW allows (freebind
// binds but does not send from a foreign address).
func sendFrom(netns ns.NetNS, src, dst netip.Addr, tag string) error {
	return netns.Do(func(ns.NetNS) error {
		network := "udp4"
		if src.Is6() {
			network = "udp6"
		}
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if src.Is6() {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_TRANSPARENT, 1)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TRANSPARENT, 1)
				}
			})
			if err != nil {
				return err
			}
			return serr
		}}
		c, err := lc.ListenPacket(context.Background(), network, netip.AddrPortFrom(src, 0).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.WriteTo([]byte(tag), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, spoofPort)))
		return err
	})
}

// sink records the source of every datagram it receives, by payload.
type sink struct {
	mu   sync.Mutex
	from map[string]netip.Addr
}

// startSink listens on spoofPort, IPv4 and IPv6, inside netns until the
// test ends.
func startSink(t *testing.T, netns ns.NetNS) *sink {
	t.Helper()
	var c net.PacketConn
	err := netns.Do(func(ns.NetNS) error {
		var err error
		c, err = net.ListenPacket("udp", fmt.Sprintf(":%d", spoofPort))
		return err
	})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &sink{from: map[string]netip.Addr{}}
	done := make(chan struct{})
	t.Cleanup(func() { _ = c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 256)
		for {
			n, addr, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.from[string(buf[:n])] = addr.(*net.UDPAddr).AddrPort().Addr().Unmap().WithZone("")
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sink) received(tag string) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.from[tag]
	return a, ok
}
