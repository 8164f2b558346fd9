package synth

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weir-cni/weir/policy"
)

// genNodeRoles are the values of the role label of the random nodes, which
// nodes peers select on.
var genNodeRoles = []string{"worker", "infra"}

// nodes are the random cluster's nodes: n1 (the local node, at its
// address), n2 and n3, each with a random role.
func (g *Random) nodes() []policy.PeerNode {
	out := make([]policy.PeerNode, 0, 3)
	for i := 1; i <= 3; i++ {
		out = append(out, policy.PeerNode{Name: fmt.Sprint("n", i),
			Labels: map[string]string{"role": g.pick(genNodeRoles), corev1.LabelOSStable: "linux"},
			Addrs:  []netip.Addr{netip.AddrFrom4([4]byte{192, 168, 0, byte(i)})}})
	}
	return out
}

// clusterPolicy is a random ClusterNetworkPolicy of either tier, with
// priorities that often tie.
func (g *Random) clusterPolicy() *cnp.ClusterNetworkPolicy {
	g.seq++
	p := &cnp.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("cnp", g.seq)}}
	g.fillClusterPolicy(p)
	return p
}

func (g *Random) fillClusterPolicy(p *cnp.ClusterNetworkPolicy) {
	p.Spec = cnp.ClusterNetworkPolicySpec{Tier: cnp.AdminTier, Priority: int32(g.r.Intn(4))}
	if g.r.Intn(2) == 0 {
		p.Spec.Tier = cnp.BaselineTier
	}
	if g.r.Intn(2) == 0 {
		p.Spec.Subject.Namespaces = g.nsSelector()
	} else {
		p.Spec.Subject.Pods = &cnp.NamespacedPod{NamespaceSelector: *g.nsSelector(), PodSelector: *g.selector()}
	}
	for i := g.r.Intn(3); i > 0; i-- {
		r := cnp.ClusterNetworkPolicyIngressRule{Action: g.action(), Protocols: g.clusterProtocols(true)}
		for j := 1 + g.r.Intn(2); j > 0; j-- {
			var peer cnp.ClusterNetworkPolicyIngressPeer
			peer.Namespaces, peer.Pods = g.namespacesOrPods()
			r.From = append(r.From, peer)
		}
		p.Spec.Ingress = append(p.Spec.Ingress, r)
	}
	for i := g.r.Intn(3); i > 0; i-- {
		named := g.r.Intn(2) == 0 // named ports only toward pods (the API's rule)
		r := cnp.ClusterNetworkPolicyEgressRule{Action: g.action(), Protocols: g.clusterProtocols(named)}
		for j := 1 + g.r.Intn(2); j > 0; j-- {
			var peer cnp.ClusterNetworkPolicyEgressPeer
			switch k := g.r.Intn(5); {
			case k < 2 || named:
				peer.Namespaces, peer.Pods = g.namespacesOrPods()
			case k == 4 && (r.Action == cnp.ClusterNetworkPolicyRuleActionAccept || !g.Valid): // Accept only (the API's rule)
				peer.DomainNames = g.domainNames()
			case k == 2:
				peer.Networks = []cnp.CIDR{cnp.CIDR(g.pick([]string{"10.1.0.0/16", "10.2.0.0/24", "0.0.0.0/0", "fd00::/8", "192.168.0.2/32"}))}
			default:
				peer.Nodes = &metav1.LabelSelector{MatchLabels: map[string]string{"role": g.pick(genNodeRoles)}}
				if g.r.Intn(3) == 0 {
					peer.Nodes = &metav1.LabelSelector{}
				}
			}
			r.To = append(r.To, peer)
		}
		p.Spec.Egress = append(p.Spec.Egress, r)
	}
}

// domainNames are one to three names of a domainNames peer, exact and
// wildcard, in any case; with a name the API refuses unless g.Valid.
func (g *Random) domainNames() []cnp.DomainName {
	names := []string{"api.example.com", "*.cdn.example.com", "Example.ORG.", "*.example.net"}
	if !g.Valid {
		names = append(names, "not a name")
	}
	var out []cnp.DomainName
	for i := 1 + g.r.Intn(3); i > 0; i-- {
		out = append(out, cnp.DomainName(g.pick(names)))
	}
	return out
}

func (g *Random) action() cnp.ClusterNetworkPolicyRuleAction {
	return []cnp.ClusterNetworkPolicyRuleAction{cnp.ClusterNetworkPolicyRuleActionAccept,
		cnp.ClusterNetworkPolicyRuleActionDeny, cnp.ClusterNetworkPolicyRuleActionPass}[g.r.Intn(3)]
}

func (g *Random) namespacesOrPods() (*metav1.LabelSelector, *cnp.NamespacedPod) {
	if g.r.Intn(2) == 0 {
		return g.nsSelector(), nil
	}
	return nil, &cnp.NamespacedPod{NamespaceSelector: *g.nsSelector(), PodSelector: *g.selector()}
}

// clusterProtocols are none (every port) half the time, else one or two
// of a TCP or UDP port, a TCP range, an SCTP port and, when named, a
// named port.
func (g *Random) clusterProtocols(named bool) []cnp.ClusterNetworkPolicyProtocol {
	if g.r.Intn(2) == 0 {
		return nil
	}
	var out []cnp.ClusterNetworkPolicyProtocol
	for i := 1 + g.r.Intn(2); i > 0; i-- {
		port := &cnp.Port{Number: int32(80 + g.r.Intn(5))}
		switch k := g.r.Intn(5); {
		case k == 0:
			out = append(out, cnp.ClusterNetworkPolicyProtocol{TCP: &cnp.ClusterNetworkPolicyProtocolTCP{DestinationPort: port}})
		case k == 1:
			out = append(out, cnp.ClusterNetworkPolicyProtocol{UDP: &cnp.ClusterNetworkPolicyProtocolUDP{DestinationPort: port}})
		case k == 2:
			r := &cnp.Port{Range: &cnp.PortRange{Start: 81, End: int32(82 + g.r.Intn(3))}}
			out = append(out, cnp.ClusterNetworkPolicyProtocol{TCP: &cnp.ClusterNetworkPolicyProtocolTCP{DestinationPort: r}})
		case k == 3 || !named:
			out = append(out, cnp.ClusterNetworkPolicyProtocol{SCTP: &cnp.ClusterNetworkPolicyProtocolSCTP{DestinationPort: port}})
		default:
			out = append(out, cnp.ClusterNetworkPolicyProtocol{DestinationNamedPort: g.pick([]string{"http", "dns", "nope"})})
		}
	}
	return out
}

// mutateCluster makes change k (0 to 11) to the cluster policies or the
// nodes of s, and says what it did.
func (g *Random) mutateCluster(s *policy.Snapshot, k int) string {
	switch {
	case k < 4:
		s.ClusterPolicies = append(s.ClusterPolicies, g.clusterPolicy())
		return "add cluster policy"
	case k < 7 && len(s.ClusterPolicies) > 0:
		s.ClusterPolicies = deleteOne(g.r, s.ClusterPolicies)
		return "delete cluster policy"
	case k < 10 && len(s.ClusterPolicies) > 0:
		i := g.r.Intn(len(s.ClusterPolicies))
		p := s.ClusterPolicies[i].DeepCopy()
		g.fillClusterPolicy(p)
		s.ClusterPolicies[i] = p
		return "edit cluster policy"
	case k < 12 && len(s.Nodes) > 0:
		i := g.r.Intn(len(s.Nodes))
		n := s.Nodes[i]
		n.Labels = map[string]string{"role": g.pick(genNodeRoles)}
		s.Nodes[i] = n
		return "relabel node"
	}
	return "nothing"
}
