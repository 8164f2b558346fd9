package main

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/weir-cni/weir/controller"
	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/dnsproxy"
	"github.com/weir-cni/weir/nft"
	"github.com/weir-cni/weir/ruleset"
)

// dnsProxy is the running DNS proxy of domainNames rules: the agent's
// controller.DNSProxy.
type dnsProxy struct{ p *dnsproxy.Proxy }

var _ controller.DNSProxy = (*dnsProxy)(nil)

// startDNSProxy starts the DNS proxy when the backend is nftables (the
// iptables backend reports domainNames rules and steers nothing; nil
// then): the policy route of steered queries, a learner on the applier's
// table, the proxy's listeners. Serve's end is sent to errc.
func startDNSProxy(ctx context.Context, applier dataplane.Applier, cfg dnsproxy.Config, mark uint32, table int, errc chan<- error) (*dnsProxy, error) {
	a, ok := applier.(*nft.NetlinkApplier)
	if !ok {
		return nil, nil
	}
	if err := dnsproxy.CheckReplyPrivileges(); err != nil {
		return nil, err
	}
	if err := controller.DNSRoute(mark, table); err != nil {
		return nil, err
	}
	l, err := a.NewLearner()
	if err != nil {
		return nil, fmt.Errorf("learner: %w", err)
	}
	cfg.Learner = l
	p, err := dnsproxy.New(cfg)
	if err != nil {
		return nil, err
	}
	go func() {
		err := p.Serve(ctx)
		if err != nil {
			err = fmt.Errorf("dns proxy: %w", err)
		}
		errc <- err
		_ = l.Close()
	}()
	return &dnsProxy{p: p}, nil
}

// Hold holds the proxy's answers (dnsproxy.Proxy.Hold).
func (d *dnsProxy) Hold(ctx context.Context) error { return d.p.Hold(ctx) }

// Release ends a Hold.
func (d *dnsProxy) Release() { d.p.Release() }

// Explain says what pod learned of addr (dnsproxy.Proxy.Explain).
func (d *dnsProxy) Explain(pod, addr netip.Addr) []dnsproxy.Learned { return d.p.Explain(pod, addr) }

// SetRules hands the proxy the ruleset's domainNames rules.
func (d *dnsProxy) SetRules(rules []ruleset.DNSRule) error {
	out := make([]dnsproxy.Rule, len(rules))
	for i, r := range rules {
		out[i] = dnsproxy.Rule{Owner: r.Owner, Set4: r.Set4, Set6: r.Set6, Names: r.Names, Pods: r.Pods}
	}
	return d.p.SetRules(out)
}
