//go:build integration

package policy

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/nft"
	"github.com/weir-cni/weir/ruleset"
)

// dnsPolicies: web and denied are the subjects of a domainNames rule
// (tcp 443 to api.example.com); only web may query the resolver; every
// pod of shop is otherwise egress-isolated; plain (dev) is the subject of
// nothing.
const dnsPolicies = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: shop, name: isolate}
spec: {podSelector: {}, policyTypes: [Egress]}
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: resolver}
spec:
  tier: Admin
  priority: 5
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  egress:
  - action: Accept
    to: [{networks: [172.17.0.53/32]}]
    protocols: [{udp: {destinationPort: {number: 53}}}, {tcp: {destinationPort: {number: 53}}}]
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: names}
spec:
  tier: Admin
  priority: 10
  subject: {pods: {namespaceSelector: {}, podSelector: {matchExpressions: [{key: app, operator: In, values: [web, denied]}]}}}
  egress:
  - action: Accept
    to: [{domainNames: [api.example.com]}]
    protocols: [{tcp: {destinationPort: {number: 443}}}]
`

// TestDNSSteeringInKernel wires pods around a node namespace, applies a
// ruleset with a domainNames rule, adds the route tproxy needs (in the
// node namespace only) and, in place of the DNS proxy, UDP and TCP
// listeners with IP_TRANSPARENT on its port; then checks with real
// packets, and against Trace, that the queries of the rule's pods reach
// the listener with their original destination and never the resolver,
// that a pod whose egress denies the resolver has its query dropped before
// interception, that a pod of no such rule queries the resolver directly,
// that with no listener the queries drop (counted) rather than reach the
// resolver, and that a learned pod . address lets exactly that pod reach
// that address on the rule's port.
func TestDNSSteeringInKernel(t *testing.T) {
	n := routerNS(t, "weirt-dns-")
	node := n.Name
	for _, args := range [][]string{
		{"rule", "add", "fwmark", "0x400000/0x400000", "lookup", "15353"},
		{"route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "15353"},
	} {
		testkit.Run(t, append([]string{"ip", "-n", node}, args...)...)
	}
	pods := []*kpod{
		{pod: Pod{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"}}, addr: "10.0.0.10/24", gw: "10.0.0.1/24"},
		{pod: Pod{Namespace: "shop", Name: "web2", Labels: map[string]string{"app": "web"}}, addr: "10.0.1.10/24", gw: "10.0.1.1/24"},
		{pod: Pod{Namespace: "shop", Name: "denied", Labels: map[string]string{"app": "denied"}}, addr: "10.0.2.10/24", gw: "10.0.2.1/24"},
		{pod: Pod{Namespace: "dev", Name: "plain"}, addr: "10.0.3.10/24", gw: "10.0.3.1/24"},
		{pod: Pod{Namespace: "ext", Name: "resolver"}, addr: "172.17.0.53/24", gw: "172.17.0.1/24"},
		{pod: Pod{Namespace: "ext", Name: "internet"}, addr: "172.17.1.10/24", gw: "172.17.1.1/24"},
	}
	snap := Snapshot{Node: Node{Name: "n1"}, PodInterfacePrefix: "veth",
		Namespaces: []Namespace{{Name: "shop"}, {Name: "dev"}}}
	snap.Pods = wireAll(t, node, pods)
	snap.Policies, snap.ClusterPolicies = parseTierPolicies(t, dnsPolicies)
	r := Compile(snap)
	if len(r.DNS) != 1 || len(r.Problems) != 0 {
		t.Fatalf("DNS rules %+v, problems %v", r.DNS, r.Problems)
	}
	a := applyIn(t, n.Path(), r)
	by := byName(pods)
	resolver := by["resolver"].pod.IPs[0]
	proxy := startRecorder(t, n, int(DefaultDNSProxyPort), true)
	upstream := startRecorder(t, by["resolver"].netns, 53, false)
	cases := []struct {
		from, proto string
		proxyDown   bool
		want        string // proxy, accept (the resolver got it) or drop
	}{
		{"web", "udp", false, "proxy"},
		{"web", "tcp", false, "proxy"},
		{"denied", "udp", false, "drop"},
		{"denied", "tcp", false, "drop"},
		{"plain", "udp", false, "accept"},
		{"plain", "tcp", false, "accept"},
		{"web", "udp", true, "drop"},
		{"web", "tcp", true, "drop"},
	}
	for i, tc := range cases {
		if tc.proxyDown && proxy != nil {
			proxy.close()
			proxy = nil
		}
		name := fmt.Sprintf("%s %s proxy down %v", tc.from, tc.proto, tc.proxyDown)
		t.Run(name, func(t *testing.T) {
			src := by[tc.from]
			proto, _ := ruleset.ProtoNumber(tc.proto)
			pkt := ruleset.Packet{Src: src.pod.IPs[0], Dst: resolver, Proto: proto, DPort: 53, InIface: fmt.Sprintf("veth%d", indexOf(pods, src)),
				ProxyDown: tc.proxyDown}
			traced, steps := ruleset.Trace(r, pkt)
			if got := fixtures.Outcome(traced, steps); got != tc.want {
				t.Errorf("trace says %s, want %s\n%s", got, tc.want, ruleset.JoinSteps(steps, "\n"))
			}
			token := fmt.Sprintf("query %d", i)
			query(src, resolver, tc.proto, token)
			got := "drop"
			if dst, ok := proxy.wait(token); ok {
				got = "proxy"
				if dst != netip.AddrPortFrom(resolver, 53) {
					t.Errorf("the listener saw the query to %s, want its original destination %s:53", dst, resolver)
				}
			}
			if _, ok := upstream.wait(token); ok {
				got += "+resolver"
				if tc.want == "accept" {
					got = "accept"
				}
			}
			if got != tc.want {
				t.Errorf("kernel says %s, want %s; trace:\n%s", got, tc.want, ruleset.JoinSteps(steps, "\n"))
			}
		})
	}
	values, err := a.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if values[CounterDNSProxyDown].Packets == 0 {
		t.Errorf("counter %s counted nothing with the proxy down", CounterDNSProxyDown)
	}
	learned(t, a, r, by)
}

// learned adds web . internet to the rule's set through a Learner and
// checks that web, and no other pod, then reaches internet on the rule's
// port only.
func learned(t *testing.T, a *nft.NetlinkApplier, r ruleset.Ruleset, by map[string]*kpod) {
	internet := by["internet"]
	testkit.ServeEcho(t, internet.netns, 443, 80)
	to := internet.pod.IPs[0]
	reach := func(from string, port int) bool {
		return testkit.Exchange(by[from].netns, netip.Addr{}, to, "tcp", port, probeTimeout) == nil
	}
	if reach("web", 443) {
		t.Fatal("web reaches the internet host before anything was learned")
	}
	l, err := a.NewLearner()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Learn(r.DNS[0].Set4, by["web"].pod.IPs[0], to, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		from string
		port int
		want bool
	}{{"web", 443, true}, {"web2", 443, false}, {"web", 80, false}} {
		if got := reach(tc.from, tc.port); got != tc.want {
			t.Errorf("%s to the learned address, port %d: reached %v, want %v", tc.from, tc.port, got, tc.want)
		}
	}
}

func indexOf(pods []*kpod, p *kpod) int {
	for i, q := range pods {
		if q == p {
			return i
		}
	}
	return -1
}

// query sends token from src to dst:53 over proto: a few datagrams (the
// first may wait on neighbour discovery), or a connection and one write.
// Nothing is read back.
func query(src *kpod, dst netip.Addr, proto, token string) {
	c, err := testkit.DialFrom(src.netns, netip.Addr{}, dst, proto, 53, probeTimeout)
	if err != nil {
		return // refused or timed out: nothing went through
	}
	defer c.Close()
	for range 3 {
		_, _ = c.Write([]byte(token))
		if proto == "tcp" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recorder listens on a port for UDP and TCP (IPv4) in a namespace and
// records each token it receives with the destination it was sent to.
// A transparent recorder is what the DNS proxy is to the kernel: its
// sockets have IP_TRANSPARENT, and it reads the original destination of
// a datagram (IP_RECVORIGDSTADDR) or of a connection (its local address).
type recorder struct {
	tcp  net.Listener
	udp  *net.UDPConn
	wg   sync.WaitGroup
	mu   sync.Mutex
	seen map[string]netip.AddrPort
}

func startRecorder(t *testing.T, n ns.NetNS, port int, transparent bool) *recorder {
	t.Helper()
	rec := &recorder{seen: map[string]netip.AddrPort{}}
	lc := net.ListenConfig{}
	if transparent {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
				if serr == nil {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1)
				}
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	addr := fmt.Sprintf("0.0.0.0:%d", port)
	err := n.Do(func(ns.NetNS) error {
		var err error
		if rec.tcp, err = lc.Listen(context.Background(), "tcp4", addr); err != nil {
			return err
		}
		pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
		if err != nil {
			return err
		}
		rec.udp = pc.(*net.UDPConn)
		return nil
	})
	if err != nil {
		t.Fatalf("listen on port %d: %v", port, err)
	}
	rec.wg.Add(2)
	go rec.serveTCP()
	go rec.serveUDP()
	t.Cleanup(rec.close)
	return rec
}

func (r *recorder) record(token string, dst netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[token] = dst
}

func (r *recorder) serveTCP() {
	defer r.wg.Done()
	for {
		c, err := r.tcp.Accept()
		if err != nil {
			return
		}
		_ = c.SetDeadline(time.Now().Add(probeTimeout))
		buf := make([]byte, 256)
		if n, err := c.Read(buf); err == nil {
			r.record(string(buf[:n]), c.LocalAddr().(*net.TCPAddr).AddrPort())
		}
		_ = c.Close()
	}
}

func (r *recorder) serveUDP() {
	defer r.wg.Done()
	buf, oob := make([]byte, 256), make([]byte, 256)
	for {
		n, oobn, _, _, err := r.udp.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			return
		}
		r.record(string(buf[:n]), origDst(oob[:oobn]))
	}
}

// origDst reads the IP_ORIGDSTADDR control message of a datagram; the
// zero AddrPort when it has none.
func origDst(oob []byte) netip.AddrPort {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.AddrPort{}
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_ORIGDSTADDR && len(m.Data) >= 8 {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(m.Data[4:8])), binary.BigEndian.Uint16(m.Data[2:4]))
		}
	}
	return netip.AddrPort{}
}

// wait reports the destination token was received at, waiting up to
// probeTimeout for it; false when it never came (or r is nil: closed).
func (r *recorder) wait(token string) (netip.AddrPort, bool) {
	if r == nil {
		return netip.AddrPort{}, false
	}
	for deadline := time.Now().Add(probeTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		dst, ok := r.seen[token]
		r.mu.Unlock()
		if ok {
			return dst, true
		}
	}
	return netip.AddrPort{}, false
}

func (r *recorder) close() {
	_ = r.tcp.Close()
	_ = r.udp.Close()
	r.wg.Wait()
}
