//go:build integration

package integration

import (
	"encoding/json"
	"net/netip"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/weir-cni/weir/internal/testkit"
)

var (
	nodeV4 = netip.MustParseAddr("10.99.0.1")
	nodeV6 = netip.MustParseAddr("fd99::1")
)

// addPod wires a fresh pod namespace into the node with a direct ADD and
// returns it with its addresses.
func addPod(t *testing.T, n *node, c netConf, id string) (*testkit.NS, []netip.Addr) {
	t.Helper()
	pod := testkit.NewTestNS(t, "weirt-p-")
	o := n.exec(testkit.Call{Command: "ADD", ContainerID: id, Netns: pod.Path(), Conf: c.single()})
	mustOK(t, "add "+id, o)
	var res current.Result
	if err := json.Unmarshal(o.Stdout, &res); err != nil {
		t.Fatalf("decode result of %s %q: %v", id, o.Stdout, err)
	}
	return pod, podIPs(t, &res)
}

func TestConnectivity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ranges []string
	}{
		{"ipv4", []string{"10.244.1.0/24"}},
		{"ipv6 only", []string{"fd00:10:244:1::/64"}},
		{"dual-stack", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			if err := n.ns.AddAddrs(nodeV4.String()+"/32", nodeV6.String()+"/128"); err != nil {
				t.Fatal(err)
			}
			c := n.conf("weirnet")
			c.Ranges = subnets(tc.ranges...)
			podA, ipsA := addPod(t, n, c, "pod-a")
			podB, ipsB := addPod(t, n, c, "pod-b")
			if len(ipsA) != len(tc.ranges) || len(ipsB) != len(tc.ranges) {
				t.Fatalf("pods got %v and %v, want one address per range %v", ipsA, ipsB, tc.ranges)
			}
			checkWired(t, n, podA, "eth0", ipsA)
			checkWired(t, n, podB, "eth0", ipsB)

			echo := map[string]*testkit.Echo{}
			for name, where := range map[string]*testkit.NS{"a": podA, "b": podB, "node": n.ns} {
				e, err := testkit.StartEcho(where, 0)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { e.Close() })
				echo[name] = e
			}
			for i := range ipsA {
				a, b := ipsA[i], ipsB[i]
				nodeIP := nodeV4
				if a.Is6() {
					nodeIP = nodeV6
				}
				// pod to pod on the same node, both ways, TCP keeps the pod's source.
				if src, err := testkit.ProbeTCP(podA, b, echo["b"].Port); err != nil {
					t.Errorf("pod a -> pod b tcp: %v", err)
				} else if src != a {
					t.Errorf("pod a -> pod b tcp came from %s, want %s (no NAT between pods)", src, a)
				}
				if _, err := testkit.ProbeTCP(podB, a, echo["a"].Port); err != nil {
					t.Errorf("pod b -> pod a tcp: %v", err)
				}
				if err := testkit.ProbeUDP(podA, b, echo["b"].Port); err != nil {
					t.Errorf("pod a -> pod b udp: %v", err)
				}
				// pod to its node and back.
				if _, err := testkit.ProbeTCP(podA, nodeIP, echo["node"].Port); err != nil {
					t.Errorf("pod a -> node tcp: %v", err)
				}
				if err := testkit.ProbeUDP(podA, nodeIP, echo["node"].Port); err != nil {
					t.Errorf("pod a -> node udp: %v", err)
				}
				if _, err := testkit.ProbeTCP(n.ns, a, echo["a"].Port); err != nil {
					t.Errorf("node -> pod a tcp: %v", err)
				}
				if err := testkit.ProbeUDP(n.ns, b, echo["b"].Port); err != nil {
					t.Errorf("node -> pod b udp: %v", err)
				}
			}
		})
	}
}
