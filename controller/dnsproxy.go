package controller

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/dnsproxy"
	"github.com/weir-cni/weir/ruleset"
)

// dnsHoldTimeout bounds the wait of a Hold for the DNS answers under way
// (each is bounded by the proxy's upstream timeout anyway).
const dnsHoldTimeout = 10 * time.Second

// DNSProxy is the DNS proxy of domainNames rules as the agent drives it
// (a dnsproxy.Proxy, which weir-agent wires).
type DNSProxy interface {
	// Hold stops the release of answers until Release, once the answers
	// under way are out; it fails, holding nothing, when ctx ends first.
	Hold(ctx context.Context) error
	// Release ends a Hold.
	Release()
	// SetRules makes rules those the proxy learns answers for.
	SetRules(rules []ruleset.DNSRule) error
	// Explain returns what the proxy learned, not yet expired, that lets
	// pod reach addr.
	Explain(pod, addr netip.Addr) []dnsproxy.Learned
}

// holdDNS holds the DNS proxy's answers when rules, the domainNames rules
// of the ruleset about to be applied, differ from those it was last given:
// an answer released once that ruleset is in the kernel must have been
// learned under its rules. It says whether it holds; a Hold that fails is
// logged and the sync goes on.
func (a *Agent) holdDNS(ctx context.Context, rules []ruleset.DNSRule) bool {
	if a.DNSProxy == nil || slices.EqualFunc(a.dnsGiven, rules, sameDNSRule) {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, dnsHoldTimeout)
	defer cancel()
	if err := a.DNSProxy.Hold(ctx); err != nil {
		a.Log.Warn("dns proxy: answers not held during the apply", "err", err)
		return false
	}
	return true
}

// setDNSRules gives the DNS proxy the domainNames rules of the ruleset just
// applied, then releases the answers holdDNS held.
func (a *Agent) setDNSRules(rules []ruleset.DNSRule, held bool) error {
	if a.DNSProxy == nil {
		return nil
	}
	err := a.DNSProxy.SetRules(rules)
	a.dnsGiven = rules // even on error: the proxy has them, and retries its Forgets
	if held {
		a.DNSProxy.Release()
	}
	return err
}

func sameDNSRule(x, y ruleset.DNSRule) bool {
	return x.Owner == y.Owner && x.Set4 == y.Set4 && x.Set6 == y.Set6 &&
		slices.Equal(x.Names, y.Names) && slices.Equal(x.Pods, y.Pods)
}

// learnedBy is the ruleset.Packet.Learned of a trace from pod to addr: the
// Dynamic sets that learned holds the pair in.
func learnedBy(pod, addr netip.Addr, learned []dnsproxy.Learned) func(string, []netip.Addr) bool {
	if len(learned) == 0 {
		return nil
	}
	return func(set string, key []netip.Addr) bool {
		return len(key) == 2 && key[0] == pod && key[1] == addr &&
			slices.ContainsFunc(learned, func(l dnsproxy.Learned) bool { return l.Set == set })
	}
}

// explainLearned is what the proxy learned as explain answers it.
func explainLearned(learned []dnsproxy.Learned) []agentapi.ExplainLearned {
	if len(learned) == 0 {
		return nil
	}
	out := make([]agentapi.ExplainLearned, len(learned))
	for i, l := range learned {
		out[i] = agentapi.ExplainLearned{Set: l.Set, Owner: explainOwner(l.Owner), Name: l.Name, Answer: l.Answer,
			Learned: l.At, Expires: l.Expires}
	}
	return out
}
