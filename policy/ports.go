package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/weir-cni/weir/ruleset"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// maxInlinePorts is the most merged port ranges a rule matches inline
// (`tcp dport 80`), one nft rule per range and peer alternative; a rule
// with more looks them all up in the ports set, in one nft rule per peer
// alternative. One: two ranges inline cost two rules of some eleven
// expressions each, where the lookup costs one rule of thirteen and two
// elements that every rule with the same port list shares (TCP and UDP 53
// is every DNS egress rule's), and the kernel's cost of a table grows with
// its expressions.
const maxInlinePorts = 1

// portRange is a numeric port or endPort range of one protocol.
type portRange struct {
	proto    uint8
	from, to uint16
}

// namedPort is a port given by name: it resolves against the destination
// pod's containerPorts with the same name and protocol.
type namedPort struct {
	proto uint8
	name  string
}

// rulePorts is what the `ports` list of one rule means. all is true when the
// list is empty: every port of every protocol.
type rulePorts struct {
	all     bool
	numeric []portRange
	named   []namedPort
}

func protoNumber(p *corev1.Protocol) (uint8, error) {
	if p == nil {
		return ruleset.ProtoTCP, nil // the API's default
	}
	// The API spells protocols in capitals only: TCP, never tcp.
	if n, ok := ruleset.ProtoNumber(string(*p)); ok && string(*p) == strings.ToUpper(string(*p)) {
		return n, nil
	}
	return 0, fmt.Errorf("unknown protocol %q", *p)
}

// parsePorts follows the API: protocol defaults to TCP; no port means every
// port of the protocol; endPort extends a numeric port into a range and is
// invalid with a named port. Any invalid entry makes the rule invalid.
func parsePorts(list []networkingv1.NetworkPolicyPort) (rulePorts, error) {
	if len(list) == 0 {
		return rulePorts{all: true}, nil
	}
	var out rulePorts
	for i, p := range list {
		proto, err := protoNumber(p.Protocol)
		if err != nil {
			return rulePorts{}, fmt.Errorf("port %d: %w", i, err)
		}
		switch {
		case p.Port == nil:
			if p.EndPort != nil {
				return rulePorts{}, fmt.Errorf("port %d: endPort without port", i)
			}
			out.numeric = append(out.numeric, portRange{proto, 0, 65535})
		case p.Port.Type == intstr.String:
			if p.EndPort != nil {
				return rulePorts{}, fmt.Errorf("port %d: endPort with named port %q", i, p.Port.StrVal)
			}
			if p.Port.StrVal == "" {
				return rulePorts{}, fmt.Errorf("port %d: empty port name", i)
			}
			out.named = append(out.named, namedPort{proto, p.Port.StrVal})
		default:
			n := p.Port.IntVal
			end := n
			if p.EndPort != nil {
				end = *p.EndPort
			}
			if n < 1 || n > 65535 || end < n || end > 65535 {
				return rulePorts{}, fmt.Errorf("port %d: invalid port range %d-%d", i, n, end)
			}
			out.numeric = append(out.numeric, portRange{proto, uint16(n), uint16(end)})
		}
	}
	return out, nil
}

// mergePorts sorts port ranges and merges overlapping ones of the same
// protocol: an interval set must not hold overlapping elements.
func mergePorts(in []portRange) []portRange {
	if len(in) == 0 {
		return nil
	}
	ps := slices.Clone(in)
	slices.SortFunc(ps, func(a, b portRange) int {
		if a.proto != b.proto {
			return cmp.Compare(a.proto, b.proto)
		}
		return cmp.Compare(a.from, b.from)
	})
	out := ps[:0] // merged in place: out never passes the range read
	for _, p := range ps {
		n := len(out)
		if n > 0 && out[n-1].proto == p.proto && p.from <= out[n-1].to {
			out[n-1].to = max(out[n-1].to, p.to)
			continue
		}
		out = append(out, p)
	}
	return out
}

func (p portRange) elem() ruleset.Elem {
	proto := string([]byte{p.proto})
	return ruleset.Elem{Key: []ruleset.Range{
		{From: proto, To: proto},
		{From: ruleset.PortBytes(p.from), To: ruleset.PortBytes(p.to)},
	}}
}

// namedElems resolves named ports against the containerPorts of dst pods:
// one element address . protocol . port per pod IP, split by family.
func namedElems(named []namedPort, dst []*podRec) (v4, v6 []ruleset.Elem) {
	for _, pod := range dst {
		for _, np := range named {
			for _, cp := range pod.Ports {
				proto, err := protoNumber((*corev1.Protocol)(&cp.Protocol))
				if cp.Protocol == "" {
					proto, err = ruleset.ProtoTCP, nil
				}
				if err != nil || cp.Name != np.name || proto != np.proto || cp.Port < 1 || cp.Port > 65535 {
					continue
				}
				for _, ip := range pod.IPs {
					ip = ip.Unmap()
					pr := string([]byte{proto})
					e := ruleset.Elem{Key: []ruleset.Range{single(ip), {From: pr, To: pr}, {From: ruleset.PortBytes(uint16(cp.Port)), To: ruleset.PortBytes(uint16(cp.Port))}}}
					if ip.Is4() {
						v4 = append(v4, e)
					} else {
						v6 = append(v6, e)
					}
				}
			}
		}
	}
	return v4, v6
}
