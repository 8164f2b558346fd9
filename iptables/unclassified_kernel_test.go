//go:build integration

package iptables

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"testing"

	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/nsgroup"
	"github.com/weir-cni/weir/policy"
)

// unclassifiedHosts are the pods of the unclassified-pod test: tool is the
// only one the snapshot knows; the others were wired (fail-open) without
// the agent, their host veth in their namespace's link group.
var unclassifiedHosts = []struct {
	key, ns string
	known   bool
	ips     []string
}{
	{"tool", "dev", true, []string{"10.0.0.30", "fd00:10::30"}},
	{"shop-new", "shop", false, []string{"10.0.0.99", "fd00:10::99"}},
	{"prod-new", "prod", false, []string{"10.0.0.98", "fd00:10::98"}},
	{"dev-new", "dev", false, []string{"10.0.0.97", "fd00:10::97"}},
}

// unclassifiedPolicies: shop denies ingress to app=db (which an unknown
// pod may be), prod denies all egress, dev has none.
const unclassifiedPolicies = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: shop, name: db-closed}
spec: {podSelector: {matchLabels: {app: db}}, ingress: []}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: prod, name: no-egress}
spec: {podSelector: {}, policyTypes: [Egress]}
`

// unclassifiedSnapshot knows tool and, when classified, shop-new (labelled
// app=web, which db-closed does not select).
func unclassifiedSnapshot(t *testing.T, classified bool) policy.Snapshot {
	s := kernelSnapshot(t, unclassifiedPolicies)
	s.Namespaces = []policy.Namespace{{Name: "dev"}, {Name: "shop"}, {Name: "prod"}}
	s.Pods = nil
	for _, h := range unclassifiedHosts {
		if !h.known && !(classified && h.key == "shop-new") {
			continue
		}
		p := policy.Pod{Namespace: h.ns, Name: h.key, Node: "n1", Labels: map[string]string{"app": "web"}}
		for _, ip := range h.ips {
			p.IPs = append(p.IPs, netip.MustParseAddr(ip))
		}
		s.Pods = append(s.Pods, p)
	}
	return s
}

// both is a probe over IPv4 and IPv6, TCP and UDP.
func both(from, to string, want bool) []testkit.Probe {
	var out []testkit.Probe
	for _, v6 := range []bool{false, true} {
		for _, proto := range []string{"tcp", "udp"} {
			out = append(out, testkit.Probe{From: from, To: to, V6: v6, Proto: proto, Port: 80, Want: want})
		}
	}
	return out
}

// TestUnclassifiedPodsTakeTheirNamespacesDefaultDeny wires pods the
// snapshot does not know, each host veth in its namespace's link group (as
// the plugin sets it), to node namespaces programmed by each backend, and
// probes over IPv4 and IPv6: an unknown pod of a namespace with an Ingress
// policy is unreachable and one of a namespace with an Egress policy cannot
// reach out, each drop counted; an unknown pod of a namespace without
// policy, and the open direction of the others, pass. Once the snapshot
// classifies the pod (labels the policy does not select), it is reachable.
func TestUnclassifiedPodsTakeTheirNamespacesDefaultDeny(t *testing.T) {
	for i, kind := range backendKinds {
		t.Run(kind, func(t *testing.T) {
			tp := newTopology(t, fmt.Sprintf("u%d", i))
			for _, h := range unclassifiedHosts {
				host := tp.addHost(t, h.key, h.ips...)
				run(t, "ip", "-n", tp.node, "link", "set", host.veth, "group", strconv.FormatUint(uint64(nsgroup.Of(h.ns)), 10))
				serve(t, host, []int{80})
			}
			b := kindBackend(t, tp, kind)
			ctx := context.Background()
			if err := b.apply(ctx, policy.Compile(unclassifiedSnapshot(t, false))); err != nil {
				t.Fatalf("apply: %v", err)
			}
			before := b.counted(t)
			var probes []testkit.Probe
			probes = append(probes, both("tool", "shop-new", false)...) // shop isolates ingress
			probes = append(probes, both("shop-new", "tool", true)...)  // but not egress
			probes = append(probes, both("prod-new", "tool", false)...) // prod isolates egress
			probes = append(probes, both("tool", "prod-new", true)...)  // but not ingress
			probes = append(probes, both("tool", "dev-new", true)...)   // dev has no policy
			probes = append(probes, both("dev-new", "tool", true)...)
			got := runProbes(t, tp, probes)
			for k, p := range probes {
				if got[k] != p.Want {
					t.Errorf("%s: got allowed=%v, want %v", p, got[k], p.Want)
				}
			}
			after := b.counted(t)
			for _, c := range []string{policy.CounterUnclassifiedIngress, policy.CounterUnclassifiedEgress} {
				if after[c].Packets <= before[c].Packets {
					t.Errorf("counter %s counted nothing (%d -> %d)", c, before[c].Packets, after[c].Packets)
				}
			}

			if err := b.apply(ctx, policy.Compile(unclassifiedSnapshot(t, true))); err != nil {
				t.Fatalf("apply with shop-new classified: %v", err)
			}
			probes = append(both("tool", "shop-new", true), both("prod-new", "tool", false)...)
			got = runProbes(t, tp, probes)
			for k, p := range probes {
				if got[k] != p.Want {
					t.Errorf("after classification: %s: got allowed=%v, want %v", p, got[k], p.Want)
				}
			}
		})
	}
}
