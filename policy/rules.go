package policy

import (
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/weir-cni/weir/ruleset"
	networkingv1 "k8s.io/api/networking/v1"
)

// ruleInput is one ingress or egress rule of one policy.
type ruleInput struct {
	dir      direction
	ns       string // the namespace of a podSelector-only peer
	peers    []networkingv1.NetworkPolicyPeer
	ports    []networkingv1.NetworkPolicyPort
	selected []*podRec // local pods the policy selects
	// localDef is the definition of the selected pods (the group of the
	// names of ingress named ports resolves against them).
	localDef string
	// owner, counter, verdict and mark are what each nft rule of the rule
	// carries: a NetworkPolicy rule accepts; a ClusterNetworkPolicy rule
	// does what its action says (cluster.go).
	owner   ruleset.Owner
	counter string
	verdict ruleset.Verdict
	mark    *ruleset.MarkSet
	log     *ruleset.Log
	// failClosed makes an invalid peer or port act on everything rather
	// than nothing (a ClusterNetworkPolicy Deny or Pass).
	failClosed bool
	// domains are the names of the rule's domainNames peers (dns.go).
	domains []string
}

// npRule is the input of rule index of NetworkPolicy p for direction d.
func (c *policyBuilder) npRule(p *networkingv1.NetworkPolicy, d direction, index int, selected []*podRec, skey string) ruleInput {
	return ruleInput{
		dir: d, ns: p.Namespace, selected: selected, localDef: defKey("local", p.Namespace, skey),
		owner:   ruleset.Owner{Kind: ruleset.OwnerPolicyRule, Namespace: p.Namespace, Policy: p.Name, Direction: d.long(), Rule: index},
		counter: policyCounterName(d, c.ps.hash, c.ps.key, index),
		verdict: ruleset.Verdict{Kind: ruleset.VerdictAccept},
	}
}

// family holds the per-family fields and the names of the sets and maps
// weir keeps once per family.
type family struct {
	typ                     ruleset.Type
	saddr, daddr            ruleset.Field
	peers, blocks, named    string // the shared sets of policy rules
	nodeAddrs, self         string // the forward chains' node and self sets
	egressPods, ingressPods string // the forward chains' pod maps
	// The same pods as plain sets, which the isolation drops look up
	// (isolationRule).
	egressIsolated, ingressIsolated string
	// The tiers' pod maps, by tier (Admin, Baseline) and direction
	// (ingress, egress): see cluster.go.
	tierPods          [2][2]string
	baselineNode      string // the Baseline tier's egress map of the input hook
	podCIDRs, cluster string // the masquerade chain's sets
	localPods         string // the classified local pods (unclassified.go)
	unrouted          string // the sources spoof.go lets pass
	dnsPods           string // the local pods of domainNames rules (dns.go)
}

var families = []family{
	{typ: ruleset.TypeIPv4, saddr: ruleset.FieldIPSaddr, daddr: ruleset.FieldIPDaddr,
		peers: setPeers4, blocks: setBlocks4, named: setNamed4, nodeAddrs: setNodeAddrs4, self: setSelf4,
		egressPods: mapEgress4, ingressPods: mapIngress4, egressIsolated: setEgressIsolated4, ingressIsolated: setIngressIsolated4, podCIDRs: setPodCIDRs4, cluster: setCluster4,
		localPods: setLocalPods4, unrouted: setUnrouted4, dnsPods: setDNSPods4,
		tierPods:     [2][2]string{{mapAdminIngress4, mapAdminEgress4}, {mapBaselineIngress4, mapBaselineEgress4}},
		baselineNode: mapBaselineNodeEgress4},
	{typ: ruleset.TypeIPv6, saddr: ruleset.FieldIP6Saddr, daddr: ruleset.FieldIP6Daddr,
		peers: setPeers6, blocks: setBlocks6, named: setNamed6, nodeAddrs: setNodeAddrs6, self: setSelf6,
		egressPods: mapEgress6, ingressPods: mapIngress6, egressIsolated: setEgressIsolated6, ingressIsolated: setIngressIsolated6, podCIDRs: setPodCIDRs6, cluster: setCluster6,
		localPods: setLocalPods6, unrouted: setUnrouted6, dnsPods: setDNSPods6,
		tierPods:     [2][2]string{{mapAdminIngress6, mapAdminEgress6}, {mapBaselineIngress6, mapBaselineEgress6}},
		baselineNode: mapBaselineNodeEgress6},
}

// ends returns the address fields of f for the pod a chain of direction d
// is about (the source for egress, the destination for ingress) and for
// the other end of the packet.
func (f family) ends(d direction) (pod, other ruleset.Field) {
	if d == dirEgress {
		return f.saddr, f.daddr
	}
	return f.daddr, f.saddr
}

// podMap is f's map of the local pods isolated for direction d.
func (f family) podMap(d direction) string {
	if d == dirEgress {
		return f.egressPods
	}
	return f.ingressPods
}

// isolated is f's set of the local pods isolated for direction d: the keys
// of podMap(d).
func (f family) isolated(d direction) string {
	if d == dirEgress {
		return f.egressIsolated
	}
	return f.ingressIsolated
}

// tierMap is f's map of the local pods tier t holds for direction d.
func (f family) tierMap(t ruleset.Tier, d direction) string {
	i := 0
	if t == ruleset.TierBaseline {
		i = 1
	}
	return f.tierPods[i][dirIndex(d)]
}

// compileRule turns one rule into nft rules and the groups of the shared
// sets they look up. The shape of the output depends on the policy only
// (never on which pods exist), so pod churn changes set elements only; and
// its size grows as peers + ports, never as their product (a policy of
// 1,000 ports × 1,000 peers once compiled to a million rules):
//
//   - selector peers: one lookup of the union of the rule's selector peers
//     in peers4/6 (equal unions of any policy share their elements; a
//     single selector is its own union); ipBlock peers: one lookup of the
//     union of the rule's ipBlocks in blocks4/6 (intervals, excepts
//     subtracted). So at most two peer alternatives per family;
//   - numeric ports: up to maxInlinePorts merged ranges stay inline
//     matches (`tcp dport 80`, `udp dport 1-2`, `meta l4proto sctp`), one
//     rule each; more are one lookup of protocol . port in the shared
//     interval set ports, so the rule count stays bounded;
//   - named ports: a lookup of id . destination address . protocol . port
//     in named4/6, resolved per destination pod and protocol (ingress: the
//     selected pods; egress: the peer pods, so that lookup alone also
//     checks the peer; toward an ipBlock a named port resolves to nothing);
//   - no ports: no port match.
//
// A rule thus has at most (maxInlinePorts + 1) × 2 rules per family: two
// peer alternatives, each with its inline range (or its ports lookup) and
// its named-port lookup.
// An invalid peer or port is reported and fails closed: the rule allows
// nothing, or, when in.failClosed (a ClusterNetworkPolicy Deny or Pass),
// acts on every peer or port. The rules are appended to out.
func (c *policyBuilder) compileRule(out []ruleset.Rule, in ruleInput) []ruleset.Rule {
	where := in.owner.String()
	ps, err := parsePorts(in.ports)
	if err != nil {
		if !in.failClosed {
			c.problem("%s: %v (rule allows nothing)", where, err)
			return out
		}
		c.problem("%s: %v (the rule acts on every port)", where, err)
		ps = rulePorts{all: true}
	}
	hasPeers := len(in.peers) > 0 || len(in.domains) > 0
	var resolved peers
	if hasPeers {
		var notes []string
		resolved, notes, err = c.resolvePeers(in.ns, in.peers)
		switch {
		case err != nil && !in.failClosed:
			c.problem("%s: %v (rule allows nothing)", where, err)
			return out
		case err != nil:
			c.problem("%s: %v (the rule acts on every peer)", where, err)
			hasPeers, in.peers = false, nil
		}
		for _, n := range notes {
			c.problem("%s: %s", where, n)
		}
	}
	if c.dry { // a policy of no local pod is only checked
		c.namedPortProblems(where, ps.named)
		return out
	}
	fams := c.ruleFamilies(in.peers)
	// alts[i] are the alternative peer lookups of fams[i]: any of them
	// admits the packet. They do not depend on the port. Egress named
	// ports check the peer in their own lookup, so a rule with only those
	// looks up no peer group.
	var alts [][][]ruleset.Match
	if hasPeers && (ps.all || len(ps.numeric) > 0 || len(ps.named) > 0 && in.dir == dirIngress) {
		alts = c.peerAlternatives(in.dir, resolved, fams)
		if len(in.domains) > 0 {
			c.dnsAlternatives(in, fams, alts)
		}
	}
	add := func(ms ...[]ruleset.Match) {
		n := 0
		for _, m := range ms {
			n += len(m)
		}
		var all []ruleset.Match // nil when none
		if n > 0 {
			all = make([]ruleset.Match, 0, n)
		}
		for _, m := range ms {
			all = append(all, m...)
		}
		if in.log != nil {
			// A rule of its own: its limit ends the rule once over the
			// rate, which must never skip the verdict.
			out = append(out, ruleset.Rule{Matches: all, Log: in.log, Owner: in.owner})
		}
		out = append(out, ruleset.Rule{Matches: all, Counter: in.counter, Mark: in.mark, Verdict: in.verdict, Owner: in.owner})
	}
	withPeers := func(pm []ruleset.Match) {
		if !hasPeers {
			add(pm)
			return
		}
		for _, fam := range alts {
			for _, alt := range fam {
				add(pm, alt) // the port first: a few compares spare the lookup
			}
		}
	}
	if ps.all {
		withPeers(nil)
	}
	for _, pm := range c.portMatches(ps.numeric) {
		withPeers([]ruleset.Match{pm})
	}
	if len(ps.named) > 0 {
		c.namedPortRules(in, where, ps.named, hasPeers, resolved, alts, add, fams)
	}
	return out
}

func (c *policyBuilder) namedPortRules(in ruleInput, where string, named []namedPort, hasPeers bool,
	resolved peers, alts [][][]ruleset.Match, add func(...[]ruleset.Match), fams []family) {
	c.namedPortProblems(where, named)
	// dst lists the pods the names resolve against: called only when the
	// group is not computed yet in this Compile, so a memo hit lists none.
	// bound is at least the pods dst lists.
	dst, dstDef, bound := func() []*podRec { return in.selected }, in.localDef, len(in.selected)
	if in.dir == dirEgress {
		dst, dstDef, bound = resolved.pods, resolved.podsDef(), resolved.podBound()
		if !hasPeers {
			dst, dstDef, bound = c.policeablePods(), "all", len(c.x.pods)
		}
	}
	bound *= len(named) // a pod resolves each name to one port, on one address per family
	names := make([]string, 0, len(named))
	for _, n := range named {
		names = append(names, n.name+"/"+ruleset.ProtoName(n.proto))
	}
	slices.Sort(names)
	def := defKey("named", append([]string{dstDef}, slices.Compact(names)...)...)
	var v4, v6 []ruleset.Elem
	resolve := sync.OnceFunc(func() { v4, v6 = namedElems(named, dst()) })
	for i, f := range fams {
		elems := func() []ruleset.Elem {
			resolve()
			if f.typ == ruleset.TypeIPv6 {
				return ruleset.SortElems(v6)
			}
			return ruleset.SortElems(v4)
		}
		id, set := c.group(f.named, def, bound, elems)
		nm := []ruleset.Match{{Kind: ruleset.MatchLookup, Fields: []ruleset.Field{f.daddr, ruleset.FieldL4Proto, ruleset.FieldTHDport}, Set: set, ID: id}}
		if hasPeers && in.dir == dirIngress {
			for _, alt := range alts[i] {
				add(alt, nm)
			}
		} else {
			add(nm)
		}
	}
}

// peerAlternatives returns, for each family of fams, the alternative peer
// lookups of a rule with peers: one of the union of its selector peers,
// one of the union of its ipBlocks of that family; each if any.
func (c *policyBuilder) peerAlternatives(dir direction, resolved peers, fams []family) [][][]ruleset.Match {
	// At most two lookups a family, each a one-match alternative of one
	// field: their slices share the arrays of the builder's peerLookups
	// (but for the fields, which the rules keep), capped so that an
	// append copies. The rules copy the matches (compileRule's add), so
	// the next rule of the policy reuses the arrays.
	l := &c.lookups
	*l = peerLookups{}
	out, alts, ms := l.out[:len(fams)], l.alts[:0], l.ms[:0]
	fields := make([]ruleset.Field, 0, 2*len(fams))
	lookup := func(field ruleset.Field, set string, id uint32) {
		n := len(ms)
		fields = append(fields, field)
		ms = append(ms, ruleset.Match{Kind: ruleset.MatchLookup, Fields: fields[n : n+1 : n+1], Set: set, ID: id})
		alts = append(alts, ms[n:n+1:n+1])
	}
	var from []*podEntry // the same for every family
	var def string
	var bound int
	if len(resolved.selectors) > 0 {
		from, def = resolved.entries(), resolved.unionDef()
		bound = membersBound(from)
	}
	for i, f := range fams {
		_, field := f.ends(dir)
		first := len(alts)
		if len(resolved.selectors) > 0 {
			id, set := c.groupFrom(f.peers, def, bound, from, func(id uint32) []ruleset.Elem { return peerElems(id, f.peers, from) })
			lookup(field, set, id)
		}
		ivs := resolved.v4
		if f.typ == ruleset.TypeIPv6 {
			ivs = resolved.v6
		}
		if len(ivs) > 0 {
			id, set := c.group(f.blocks, blocksDef(ivs), len(ivs), func() []ruleset.Elem { return intervalElems(ivs) })
			lookup(field, set, id)
		}
		if len(alts) > first {
			out[i] = alts[first:len(alts):len(alts)]
		}
	}
	return out
}

// peerLookups holds what peerAlternatives returns for the two families,
// until the next call.
type peerLookups struct {
	out  [2][][]ruleset.Match
	alts [4][]ruleset.Match
	ms   [4]ruleset.Match
}

// portMatches returns the alternative matches of a rule's numeric ports:
// an inline match when they merge into at most maxInlinePorts ranges,
// else one lookup of them all in the ports set, whose group equal port
// lists of any policy share (see maxInlinePorts for why one).
func (c *policyBuilder) portMatches(numeric []portRange) []ruleset.Match {
	merged := mergePorts(numeric)
	if len(merged) <= maxInlinePorts {
		out := make([]ruleset.Match, 0, len(merged))
		for _, p := range merged {
			out = append(out, ruleset.Match{Kind: ruleset.MatchPort, Proto: p.proto, PortFrom: p.from, PortTo: p.to, AllPorts: p.from == 0 && p.to == 65535})
		}
		return out
	}
	var b strings.Builder
	for _, p := range merged {
		b.WriteByte(p.proto)
		b.WriteString(ruleset.PortBytes(p.from))
		b.WriteString(ruleset.PortBytes(p.to))
	}
	id, set := c.group(setPorts, defKey("ports", b.String()), len(merged), func() []ruleset.Elem {
		out := make([]ruleset.Elem, 0, len(merged))
		for _, p := range merged {
			out = append(out, p.elem())
		}
		return out // sorted: by protocol, then port
	})
	return []ruleset.Match{{Kind: ruleset.MatchLookup, Fields: []ruleset.Field{ruleset.FieldL4Proto, ruleset.FieldTHDport}, Set: set, ID: id}}
}

// blocksDef is the definition of a group of ipBlock ranges: the ranges
// themselves (the bytes of their elements' keys), so equal ipBlocks share
// one group whatever their policy.
func blocksDef(ivs []interval) string {
	b := make([]byte, 0, 32*len(ivs))
	for _, iv := range ivs {
		b = appendAddr(appendAddr(b, iv.lo), iv.hi)
	}
	return defKey("blocks", string(b))
}

// namedPortProblems reports the named ports no pod defines.
func (c *policyBuilder) namedPortProblems(where string, named []namedPort) {
	for _, n := range named {
		if c.definedPorts()[n] == nil {
			c.problem("%s: named port %s/%s is defined by no pod (matches nothing)", where, n.name, strings.ToUpper(ruleset.ProtoName(n.proto)))
		}
	}
}

// ruleFamilies are the address families a rule needs sets for: those the
// cluster uses, plus those its ipBlocks name. It depends on the policy and
// the cluster's families only, never on which pods exist.
func (c *policyBuilder) ruleFamilies(list []networkingv1.NetworkPolicyPeer) []family {
	v4, v6 := c.x.fam[0], c.x.fam[1]
	for _, p := range list {
		if p.IPBlock == nil {
			continue
		}
		if pfx, err := netip.ParsePrefix(p.IPBlock.CIDR); err == nil && unmapPrefix(pfx).IsValid() {
			if unmapPrefix(pfx).Addr().Is4() {
				v4 = true
			} else {
				v6 = true
			}
		}
	}
	// A part of families, shared by every caller: read only.
	switch {
	case v4 && v6:
		return families[:2:2]
	case v4:
		return families[:1:1]
	case v6:
		return families[1:2:2]
	}
	return nil
}

// policeablePods returns a function listing every pod that can be a peer:
// not hostNetwork. The policy is compiled again whenever any pod changes,
// from now on, whether or not the list is ever made.
func (c *policyBuilder) policeablePods() func() []*podRec {
	c.uses(c.x.allUsers)
	return func() []*podRec {
		out := make([]*podRec, 0, len(c.x.pods))
		for _, p := range c.x.pods {
			if !p.HostNetwork {
				out = append(out, p)
			}
		}
		return out
	}
}

// definedPorts tells which (name, protocol) some pod's containerPorts
// define. The policy is compiled again when that changes.
func (c *policyBuilder) definedPorts() map[namedPort]*int {
	c.uses(c.x.portUsers)
	return c.x.ports
}
