package nft

import (
	"fmt"
	"net/netip"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// ruleInput is one ingress or egress rule of one policy.
type ruleInput struct {
	dir      direction
	key      string // namespace/name
	hash     string // hash8(key)
	ns       string
	index    int
	peers    []networkingv1.NetworkPolicyPeer
	ports    []networkingv1.NetworkPolicyPort
	selected []*podRec // local pods the policy selects
}

// family holds the per-family field and naming choices.
type family struct {
	suffix       string // "4" or "6"
	typ          Type
	saddr, daddr Field
}

var families = []family{
	{"4", TypeIPv4, FieldIPSaddr, FieldIPDaddr},
	{"6", TypeIPv6, FieldIP6Saddr, FieldIP6Daddr},
}

// compileRule turns one rule into nft rules plus the sets they look up. The
// shape of the output depends on the policy only (never on which pods exist),
// so pod churn changes set elements only:
//
//   - peers (if `from`/`to` is non-empty): interval sets peers4 / peers6 of
//     the peer addresses, matched on saddr (ingress) or daddr (egress);
//   - numeric ports: one inline match per merged port range (`tcp dport
//     80`, `udp dport 1-2`, `meta l4proto sctp`), so ports cost no set;
//   - named ports: sets `ipvN_addr . inet_proto . inet_service` of the
//     destination pods resolved per pod and protocol (ingress: the selected
//     pods; egress: the peer pods, so that set alone also checks the peer;
//     toward an ipBlock a named port resolves to nothing);
//   - no ports: no port match.
//
// An invalid peer or port makes the rule allow nothing and is reported.
func (c *compiler) compileRule(in ruleInput) []Rule {
	where := fmt.Sprintf("%s %s rule %d", in.key, in.dir.long(), in.index)
	ps, err := parsePorts(in.ports)
	if err != nil {
		c.problem("%s: %v (rule allows nothing)", where, err)
		return nil
	}
	hasPeers := len(in.peers) > 0
	var resolved peers
	if hasPeers {
		var notes []string
		resolved, notes, err = c.resolvePeers(in.ns, in.peers)
		if err != nil {
			c.problem("%s: %v (rule allows nothing)", where, err)
			return nil
		}
		for _, n := range notes {
			c.problem("%s: %s", where, n)
		}
	}
	if c.dry { // a policy of no local pod is only checked
		c.namedPortProblems(where, ps.named)
		return nil
	}
	peerMatch := func(f family) []Match {
		if !hasPeers {
			return nil
		}
		field, ivs := f.saddr, resolved.v4
		if in.dir == dirEgress {
			field = f.daddr
		}
		if f.typ == TypeIPv6 {
			ivs = resolved.v6
		}
		name := policySetNameHash(in.dir, in.hash, in.key, in.index, "peers"+f.suffix)
		if _, ok := c.sets[name]; !ok {
			c.addSet(Set{Name: name, Key: []Type{f.typ}, Interval: true, Comment: where + " peers", Elems: intervalElems(ivs)})
		}
		return []Match{{Kind: MatchLookup, Fields: []Field{field}, Set: name}}
	}
	var out []Rule
	add := func(ms ...[]Match) {
		var all []Match
		for _, m := range ms {
			all = append(all, m...)
		}
		out = append(out, Rule{Matches: all, Verdict: Verdict{Kind: VerdictAccept}, Comment: where})
	}
	fams := c.ruleFamilies(in.peers)
	portSets := func(pm []Match) {
		if hasPeers {
			for _, f := range fams {
				add(peerMatch(f), pm)
			}
			return
		}
		add(pm)
	}
	if ps.all {
		portSets(nil)
	}
	for _, p := range mergePorts(ps.numeric) {
		m := Match{Kind: MatchPort, Proto: p.proto, PortFrom: p.from, PortTo: p.to, AllPorts: p.from == 0 && p.to == 65535}
		portSets([]Match{m})
	}
	if len(ps.named) > 0 {
		c.namedPortRules(in, where, ps.named, hasPeers, resolved, peerMatch, add, fams)
	}
	return out
}

func (c *compiler) namedPortRules(in ruleInput, where string, named []namedPort, hasPeers bool,
	resolved peers, peerMatch func(family) []Match, add func(...[]Match), fams []family) {
	c.namedPortProblems(where, named)
	dst := in.selected
	if in.dir == dirEgress {
		dst = resolved.pods
		if !hasPeers {
			dst = c.policeablePods()
		}
	}
	v4, v6 := namedElems(named, dst)
	for _, f := range fams {
		name := policySetNameHash(in.dir, in.hash, in.key, in.index, "named"+f.suffix)
		elems := v4
		if f.typ == TypeIPv6 {
			elems = v6
		}
		c.addSet(Set{Name: name, Key: []Type{f.typ, TypeProto, TypePort}, Comment: where + " named ports", Elems: elems})
		nm := []Match{{Kind: MatchLookup, Fields: []Field{f.daddr, FieldL4Proto, FieldTHDport}, Set: name}}
		if hasPeers && in.dir == dirIngress {
			add(peerMatch(f), nm)
		} else {
			add(nm)
		}
	}
}

// namedPortProblems reports the named ports no pod defines.
func (c *compiler) namedPortProblems(where string, named []namedPort) {
	for _, n := range named {
		if c.definedPorts()[n] == 0 {
			c.problem("%s: named port %s/%s is defined by no pod (matches nothing)", where, n.name, strings.ToUpper(protoName(n.proto)))
		}
	}
}

// ruleFamilies are the address families a rule needs sets for: those the
// cluster uses, plus those its ipBlocks name. It depends on the policy and
// the cluster's families only, never on which pods exist.
func (c *compiler) ruleFamilies(list []networkingv1.NetworkPolicyPeer) []family {
	on := map[Type]bool{TypeIPv4: c.x.fam[0], TypeIPv6: c.x.fam[1]}
	for _, p := range list {
		if p.IPBlock == nil {
			continue
		}
		if pfx, err := netip.ParsePrefix(p.IPBlock.CIDR); err == nil && unmapPrefix(pfx).IsValid() {
			if unmapPrefix(pfx).Addr().Is4() {
				on[TypeIPv4] = true
			} else {
				on[TypeIPv6] = true
			}
		}
	}
	var out []family
	for _, f := range families {
		if on[f.typ] {
			out = append(out, f)
		}
	}
	return out
}

// policeablePods are every pod that can be a peer: not hostNetwork. The
// policy is compiled again whenever any pod changes.
func (c *compiler) policeablePods() []*podRec {
	c.x.allUsers[c.ps] = struct{}{}
	out := make([]*podRec, 0, len(c.x.pods))
	for _, p := range c.x.pods {
		if !p.HostNetwork {
			out = append(out, p)
		}
	}
	return out
}

// definedPorts tells which (name, protocol) some pod's containerPorts
// define. The policy is compiled again when that changes.
func (c *compiler) definedPorts() map[namedPort]int {
	c.x.portUsers[c.ps] = struct{}{}
	return c.x.ports
}
