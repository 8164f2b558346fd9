//go:build integration

package iptables

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/weir-cni/weir/internal/testkit"
)

// probeTimeout is how long a probe waits before calling a connection
// denied: dropped packets give no answer, so silence is the signal.
const probeTimeout = 1500 * time.Millisecond

// serve runs a TCP and UDP echo server on every port, on all addresses of
// the host's namespace, until the test ends.
func serve(t testing.TB, h *host, ports []int) { testkit.ServeEcho(t, h.netns, ports...) }

// runProbes runs every probe concurrently and returns whether each got
// through, in order: a probe is allowed when its TCP or UDP round trip to
// the echo server succeeds (from whichever source address routing picks),
// denied when it times out. Any other failure fails the test.
func runProbes(t testing.TB, tp *topology, probes []testkit.Probe) []bool {
	t.Helper()
	from := make([]*host, len(probes))
	dst := make([]netip.Addr, len(probes))
	for i, p := range probes {
		from[i] = tp.hosts[p.From]
		to := tp.hosts[p.To]
		if from[i] == nil || to == nil {
			t.Fatalf("probe %+v: unknown host", p)
		}
		dst[i] = pick(to, p.V6)
	}
	got := make([]bool, len(probes))
	errs := make([]error, len(probes))
	testkit.Parallel(len(probes), 16, func(i int) {
		p := probes[i]
		errs[i] = testkit.Exchange(from[i].netns, netip.Addr{}, dst[i], p.Proto, p.Port, probeTimeout)
	})
	for i, err := range errs {
		var ne net.Error
		switch {
		case err == nil:
			got[i] = true
		case !errors.As(err, &ne) || !ne.Timeout():
			t.Errorf("probe %+v: %v", probes[i], err)
		}
	}
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
