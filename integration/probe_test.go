//go:build integration

package integration

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weir-cni/weir/integration/harness"
)

// endpoint is one side of a probe: a pod ("ns/name"), "node", or an
// external address ("ext:10.0.0.5").
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

// endpoint returns the namespace and address of a probe side.
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
// differs from what it wants.
func (c *cluster) run(probes []probe) {
	c.t.Helper()
	type result struct {
		p   probe
		err error
	}
	results := make([]result, len(probes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 24)
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			srcNS, src := c.endpoint(p.from, p.v6)
			_, dst := c.endpoint(p.to, p.v6)
			results[i] = result{p, harness.Exchange(srcNS, src, dst, p.proto, p.port, probeWait)}
		}()
	}
	wg.Wait()
	for _, r := range results {
		got := r.err == nil
		if got != r.p.want {
			c.t.Errorf("%s: allowed=%v, want %v (%v)", r.p, got, r.p.want, r.err)
		}
	}
}
