//go:build integration

package integration

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weir-cni/weir/internal/testkit"
)

// probe is one connection attempt between two endpoints (see endpoint)
// and whether it should get through.
type probe struct {
	from, to string
	proto    string // tcp or udp
	port     int
	v6       bool
	want     bool
}

func (p probe) String() string {
	fam := "v4"
	if p.v6 {
		fam = "v6"
	}
	return fmt.Sprintf("%s -> %s %s/%d (%s)", p.from, p.to, p.proto, p.port, fam)
}

// endpoint returns the namespace and address of one side of a probe: a pod
// ("ns/name"), "node", or an external address ("ext:10.0.0.5"). It fails
// the test on a bad reference, so call it on the test goroutine only.
func (c *cluster) endpoint(ref string, v6 bool) (ns.NetNS, netip.Addr) {
	switch {
	case ref == "node":
		if v6 {
			return c.node, netip.MustParseAddr(nodeAddr6)
		}
		return c.node, netip.MustParseAddr(nodeAddr4)
	case strings.HasPrefix(ref, "ext:"):
		return c.ext, netip.MustParseAddr(strings.TrimPrefix(ref, "ext:"))
	}
	p, ok := c.pods[ref]
	if !ok {
		c.t.Fatalf("unknown endpoint %q", ref)
	}
	for _, s := range p.ips {
		a := netip.MustParseAddr(s)
		if a.Is6() == v6 {
			return p.netns, a
		}
	}
	c.t.Fatalf("pod %s has no address of that family", ref)
	return nil, netip.Addr{}
}

// run fires every probe in parallel and reports each one whose outcome
// differs from what it wants. Endpoints are resolved first, on the test
// goroutine, so a bad reference fails the test instead of reading as allowed.
func (c *cluster) run(probes []probe) {
	c.t.Helper()
	type side struct {
		srcNS    ns.NetNS
		src, dst netip.Addr
	}
	sides := make([]side, len(probes))
	for i, p := range probes {
		sides[i].srcNS, sides[i].src = c.endpoint(p.from, p.v6)
		_, sides[i].dst = c.endpoint(p.to, p.v6)
	}
	errs := make([]error, len(probes))
	testkit.Parallel(len(probes), 24, func(i int) {
		s, p := sides[i], probes[i]
		errs[i] = testkit.Exchange(s.srcNS, s.src, s.dst, p.proto, p.port, probeWait)
	})
	for i, p := range probes {
		if got := errs[i] == nil; got != p.want {
			c.t.Errorf("%s: allowed=%v, want %v (%v)", p, got, p.want, errs[i])
		}
	}
}
