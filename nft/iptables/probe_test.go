//go:build integration

package iptables

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// probeTimeout is how long a probe waits before calling a connection
// denied: dropped packets give no answer, so silence is the signal.
const probeTimeout = 1500 * time.Millisecond

// serve runs TCP accept and UDP echo servers on every port, on all
// addresses of the host's namespace, until the test ends.
func serve(t testing.TB, h *host, ports []int) {
	t.Helper()
	err := ns.WithNetNSPath(h.path, func(ns.NetNS) error {
		for _, p := range ports {
			addr := "[::]:" + strconv.Itoa(p)
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			t.Cleanup(func() { _ = l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					_, _ = c.Write([]byte("ok"))
					_ = c.Close()
				}
			}()
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			t.Cleanup(func() { _ = u.Close() })
			go func() {
				buf := make([]byte, 64)
				for {
					n, from, err := u.ReadFrom(buf)
					if err != nil {
						return
					}
					_, _ = u.WriteTo(buf[:n], from)
				}
			}()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("serve in %s: %v", h.name, err)
	}
}

// probe is one connection attempt.
type probe struct {
	from, to string // host keys
	v6       bool
	proto    string // tcp or udp
	port     int
	want     bool // allowed
}

// dial reports whether a TCP connection (answered with "ok") or a UDP
// round trip succeeds from h to dst.
func dial(h *host, proto string, dst netip.Addr, port int) (bool, error) {
	ok := false
	err := ns.WithNetNSPath(h.path, func(ns.NetNS) error {
		c, err := net.DialTimeout(proto, net.JoinHostPort(dst.String(), strconv.Itoa(port)), probeTimeout)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(probeTimeout))
		if proto == "udp" {
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
		}
		buf := make([]byte, 8)
		n, err := c.Read(buf)
		ok = err == nil && n > 0
		return nil
	})
	return ok, err
}

// runProbes runs every probe concurrently and returns whether each got
// through, in order.
func runProbes(t testing.TB, tp *topology, probes []probe) []bool {
	t.Helper()
	got := make([]bool, len(probes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			from, to := tp.hosts[p.from], tp.hosts[p.to]
			ok, err := dial(from, p.proto, pick(to, p.v6), p.port)
			if err != nil {
				t.Errorf("probe %+v: %v", p, err)
			}
			got[i] = ok
		}()
	}
	wg.Wait()
	return got
}

// pick returns the host's address of one family.
func pick(h *host, v6 bool) netip.Addr {
	for _, ip := range h.ips {
		if ip.Is6() == v6 {
			return ip
		}
	}
	return netip.Addr{}
}
