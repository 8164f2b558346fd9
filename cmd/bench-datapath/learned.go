package main

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weir-cni/weir/internal/datapath"
	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/nft"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// With -learned N, the cluster has one more ClusterNetworkPolicy,
// learnedPolicy: a domainNames rule whose learned-address set the
// benchmark fills with N pairs, the client's pair with the server among
// them, through the agent's Learner. The test connection is then allowed
// on the client's egress by that set and nothing else: the policy's next
// rule denies it, and an Admin tier Accept ends the egress evaluation
// before any NetworkPolicy.
const (
	learnedPolicyName = "bench-learned"
	learnedDomain     = "bench.example.com"
	// maxLearned is the size of learnedRange: every pair has an address
	// of its own.
	maxLearned = 1 << 17
	// learnedTTL is the timeout of the pairs: longer than any run.
	learnedTTL = 24 * time.Hour
)

// learnedRange holds the learned addresses but the server's (RFC 2544's
// benchmarking range, outside the cluster).
var learnedRange = netip.MustParsePrefix("198.18.0.0/15")

// learnedPolicy is an Admin tier policy, evaluated after the generated
// ones (the highest priority number), whose subject is the pods labelled
// app2 in every namespace (the client and one local pod per namespace).
// Egress rule 0 accepts, on every port, the addresses their lookups of
// learnedDomain returned; rule 1 denies TCP testPort to the server.
func learnedPolicy() *cnp.ClusterNetworkPolicy {
	accept, deny := cnp.ClusterNetworkPolicyRuleActionAccept, cnp.ClusterNetworkPolicyRuleActionDeny
	return &cnp.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: learnedPolicyName},
		Spec: cnp.ClusterNetworkPolicySpec{Tier: cnp.AdminTier, Priority: 1000,
			Subject: cnp.ClusterNetworkPolicySubject{Pods: &cnp.NamespacedPod{PodSelector: *fixtures.Match("app", "app2")}},
			Egress: []cnp.ClusterNetworkPolicyEgressRule{
				{Name: "learned", Action: accept, To: []cnp.ClusterNetworkPolicyEgressPeer{{DomainNames: []cnp.DomainName{learnedDomain}}}},
				{Name: "server", Action: deny, To: []cnp.ClusterNetworkPolicyEgressPeer{{Networks: []cnp.CIDR{cnp.CIDR(serverIP + "/32")}}},
					Protocols: []cnp.ClusterNetworkPolicyProtocol{{TCP: &cnp.ClusterNetworkPolicyProtocolTCP{
						DestinationPort: &cnp.Port{Number: testPort}}}}},
			}}}
}

// withLearned adds learnedPolicy to s, with sets large enough for n
// pairs; s is unchanged when n is 0.
func withLearned(s policy.Snapshot, n int) policy.Snapshot {
	if n == 0 {
		return s
	}
	s.ClusterPolicies = append(slices.Clone(s.ClusterPolicies), learnedPolicy())
	s.DNSSetSize = max(uint32(n), policy.DefaultDNSSetSize)
	return s
}

// withoutLearned is s without learnedPolicy.
func withoutLearned(s policy.Snapshot) policy.Snapshot {
	s.ClusterPolicies = slices.DeleteFunc(slices.Clone(s.ClusterPolicies), func(p *cnp.ClusterNetworkPolicy) bool {
		return p.Name == learnedPolicyName
	})
	return s
}

// pair is one element of a learned-address set: a local pod's address and
// an address its lookups returned.
type pair struct{ pod, addr netip.Addr }

// learned are the pairs the benchmark writes into the IPv4 set of
// learnedPolicy's rule, as the DNS proxy would.
type learned struct {
	set string
	// pods is how many pods the pairs are spread over.
	pods int
	// pairs[0] is client . server; the others give each of the rule's
	// IPv4 pods in turn an address of learnedRange.
	pairs []pair
}

// learnedPairs returns n pairs for the set of learnedPolicy's domainNames
// rule in rs (rs.DNS names the set and the local pods the rule holds); none
// when n is 0.
func learnedPairs(rs ruleset.Ruleset, n int) (learned, error) {
	if n == 0 {
		return learned{}, nil
	}
	if n > maxLearned {
		return learned{}, fmt.Errorf("%d learned addresses: at most %d", n, maxLearned)
	}
	i := slices.IndexFunc(rs.DNS, func(r ruleset.DNSRule) bool { return r.Owner.Policy == learnedPolicyName })
	if i < 0 {
		return learned{}, fmt.Errorf("no domainNames rule of %s in the ruleset", learnedPolicyName)
	}
	pods := slices.DeleteFunc(slices.Clone(rs.DNS[i].Pods), func(a netip.Addr) bool { return !a.Is4() })
	client, server := netip.MustParseAddr(clientIP), netip.MustParseAddr(serverIP)
	if !slices.Contains(pods, client) {
		return learned{}, fmt.Errorf("the domainNames rule of %s does not hold the client %s", learnedPolicyName, client)
	}
	l := learned{set: rs.DNS[i].Set4, pods: len(pods), pairs: make([]pair, 0, n)}
	l.pairs = append(l.pairs, pair{client, server})
	base := learnedRange.Addr().As4()
	first := uint32(base[0])<<24 | uint32(base[1])<<16
	for k := 1; k < n; k++ {
		a := first + uint32(k)
		l.pairs = append(l.pairs, pair{pods[k%len(pods)], netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})})
	}
	return l, nil
}

// traced is rs with l's pairs in its set as if the compiler had put them
// there, for ruleset.Trace (which finds nothing in a Dynamic set).
func traced(rs ruleset.Ruleset, l learned) ruleset.Ruleset {
	i := slices.IndexFunc(rs.Sets, func(s ruleset.Set) bool { return s.Name == l.set })
	if i < 0 {
		return rs
	}
	rs.Sets = slices.Clone(rs.Sets)
	s := &rs.Sets[i]
	s.Dynamic, s.Elems = false, make([]ruleset.Elem, 0, len(l.pairs))
	for _, p := range l.pairs {
		pod, addr := string(p.pod.AsSlice()), string(p.addr.AsSlice())
		s.Elems = append(s.Elems, ruleset.Elem{Key: []ruleset.Range{{From: pod, To: pod}, {From: addr, To: addr}}})
	}
	return rs
}

// checkLearned proves that the test connection is allowed on egress by
// l's set and by nothing else: traced with the pairs, the client's egress
// is accepted by learnedPolicy's domainNames rule; without them, it is
// dropped by the policy's next rule.
func checkLearned(rs ruleset.Ruleset, l learned) error {
	pkt := ruleset.Packet{Src: netip.MustParseAddr(clientIP), Dst: netip.MustParseAddr(serverIP), Proto: ruleset.ProtoTCP, DPort: testPort}
	_, steps := ruleset.Trace(traced(rs, l), pkt)
	if !slices.ContainsFunc(steps, func(s ruleset.Step) bool { return decidedBy(s, 0, ruleset.VerdictAccept) }) {
		return fmt.Errorf("trace of client -> server port %d with the learned pairs: egress not accepted by %s's domainNames rule:\n  %s",
			testPort, learnedPolicyName, ruleset.JoinSteps(steps, "\n  "))
	}
	v, steps := ruleset.Trace(rs, pkt)
	if v != ruleset.VerdictDrop || !decidedBy(steps[len(steps)-1], 1, ruleset.VerdictDrop) {
		return fmt.Errorf("trace of client -> server port %d without the learned pairs: not dropped by %s's deny rule:\n  %s",
			testPort, learnedPolicyName, ruleset.JoinSteps(steps, "\n  "))
	}
	return nil
}

// decidedBy tells whether s is egress rule index of learnedPolicy with
// verdict v.
func decidedBy(s ruleset.Step, index int, v ruleset.VerdictKind) bool {
	return s.Kind == ruleset.StepRule && s.Owner.Kind == ruleset.OwnerPolicyRule && s.Owner.Policy == learnedPolicyName &&
		s.Owner.Direction == ruleset.Egress && s.Owner.Rule == index && s.Verdict.Kind == v
}

// learnInto writes l's pairs into the node's set through the agent's
// Learner on the applier's table, and returns how long it took.
func learnInto(l *nft.Learner, pairs learned) (time.Duration, error) {
	t0 := time.Now()
	for _, p := range pairs.pairs {
		if err := l.Learn(pairs.set, p.pod, p.addr, learnedTTL); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

// learning writes learned pairs into a table through the agent's Learner,
// and records how long each fill took.
type learning struct {
	learner *nft.Learner
	l       learned
	took    []time.Duration
}

// fillChecked opens a Learner on b's table and fills it with l (see
// learnInto), checking with b's table on that the client cannot reach
// the server's testPort before and can after: in the kernel too, the
// learned set alone lets the test connection through. b fills the table
// again after each of its full applies.
func fillChecked(b *datapath.Nft, cl datapath.Client, l learned) (*learning, error) {
	learner, err := b.A.NewLearner()
	if err != nil {
		return nil, fmt.Errorf("open a Learner on the node's table: %w", err)
	}
	lr := &learning{learner: learner, l: l}
	b.AfterFull = lr.learn
	if err := cl.Request(); err == nil {
		return lr, fmt.Errorf("client -> server port %d got through before any address was learned", testPort)
	}
	if err := lr.learn(); err != nil {
		return lr, err
	}
	if err := cl.Request(); err != nil {
		return lr, fmt.Errorf("client -> server port %d after learning client . server: %w", testPort, err)
	}
	return lr, nil
}

// learn writes the pairs into the table, and records how long it took.
func (lr *learning) learn() error {
	took, err := learnInto(lr.learner, lr.l)
	if err != nil {
		return fmt.Errorf("learn %d pairs into set %s: %w", len(lr.l.pairs), lr.l.set, err)
	}
	lr.took = append(lr.took, took)
	return nil
}

// Close closes the Learner.
func (lr *learning) Close() error { return lr.learner.Close() }

// learnedWhen says when the nft configuration learns its pairs.
func learnedWhen(fullApply bool) string {
	if fullApply {
		return "after each full apply, before the pause that precedes a round"
	}
	return "once: incremental applies keep them"
}
