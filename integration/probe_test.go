//go:build integration

package integration

import (
	"net/netip"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weir-cni/weir/internal/testkit"
)

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
	if a := family(p.ips, v6); a.IsValid() {
		return p.netns, a
	}
	c.t.Fatalf("pod %s has no address of that family", ref)
	return nil, netip.Addr{}
}

// run fires every probe in parallel and reports each one whose outcome
// differs from what it wants. Endpoints are resolved first, on the test
// goroutine, so a bad reference fails the test instead of reading as allowed.
func (c *cluster) run(probes []testkit.Probe) {
	c.t.Helper()
	type side struct {
		srcNS    ns.NetNS
		src, dst netip.Addr
	}
	sides := make([]side, len(probes))
	for i, p := range probes {
		sides[i].srcNS, sides[i].src = c.endpoint(p.From, p.V6)
		_, sides[i].dst = c.endpoint(p.To, p.V6)
	}
	errs := make([]error, len(probes))
	testkit.Parallel(len(probes), 24, func(i int) {
		s, p := sides[i], probes[i]
		errs[i] = testkit.Exchange(s.srcNS, s.src, s.dst, p.Proto, p.Port, probeTimeout(p))
	})
	for i, p := range probes {
		if got := errs[i] == nil; got != p.Want {
			c.t.Errorf("%s: allowed=%v, want %v (%v)", p, got, p.Want, errs[i])
		}
	}
}
