//go:build integration

package dnsproxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/weir-cni/weir/internal/testkit"
	"golang.org/x/sys/unix"
)

// childEnv, when set ("port pod4 pod6"), makes the test binary the proxy
// of TestTransparentPath, run in the node namespace it was started in:
// every socket the proxy opens, on any thread, is that namespace's.
const childEnv = "WEIR_DNSPROXY_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(privilegesEnv) != "" {
		if err := CheckReplyPrivileges(); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv(childEnv); spec != "" {
		if err := runChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild serves a proxy whose one rule allows api.example.com to the
// pod's addresses, printing each Learn, until SIGTERM.
func runChild(spec string) error {
	var port int
	var pod4, pod6 string
	if _, err := fmt.Sscan(spec, &port, &pod4, &pod6); err != nil {
		return fmt.Errorf("%s=%q: %w", childEnv, spec, err)
	}
	p, err := New(Config{Port: port, Learner: &printLearner{}})
	if err != nil {
		return err
	}
	rule := Rule{Set4: "dns4-it", Set6: "dns6-it", Names: []string{"api.example.com"},
		Pods: []netip.Addr{netip.MustParseAddr(pod4), netip.MustParseAddr(pod6)}}
	if err := p.SetRules([]Rule{rule}); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	return p.Serve(ctx)
}

// printLearner prints each Learn as a line "set pod addr ttl".
type printLearner struct{ mu sync.Mutex }

func (l *printLearner) Learn(set string, pod, addr netip.Addr, ttl time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := fmt.Printf("%s %s %s %s\n", set, pod, addr, ttl)
	return err
}

func (l *printLearner) Forget(string, netip.Addr, []netip.Addr) error { return nil }

// The namespaces' addresses: client (the pod) — node (the proxy) —
// resolver.
var (
	client4, client6     = netip.MustParseAddr("10.77.1.2"), netip.MustParseAddr("fd77:1::2")
	nodeUp4, nodeUp6     = netip.MustParseAddr("10.77.2.1"), netip.MustParseAddr("fd77:2::1")
	resolver4, resolver6 = netip.MustParseAddr("10.77.2.2"), netip.MustParseAddr("fd77:2::2")
)

const (
	itPort  = 15353
	itMark  = 0x00400000
	itTable = 15353
)

// TestTransparentPath: in a node namespace whose tproxy rules steer the
// client's DNS to the proxy (the agent's steering, by hand), UDP and TCP
// queries of both families to a resolver in another namespace go through
// the proxy to that resolver (the resolver sees the node, not the
// client), the proxy learns the answer for the client, and the client
// gets the answer from resolver:53.
func TestTransparentPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	client, node, resolver := testkit.NewTestNS(t, "dnsc"), testkit.NewTestNS(t, "dnsn"), testkit.NewTestNS(t, "dnsr")
	link(t, node, client, "vc", "10.77.1.1/24", "fd77:1::1/64", "10.77.1.2/24", "fd77:1::2/64")
	link(t, node, resolver, "vr", "10.77.2.1/24", "fd77:2::1/64", "10.77.2.2/24", "fd77:2::2/64")
	if err := client.Do(func(ns.NetNS) error { return defaultRoutes("10.77.1.1", "fd77:1::1") }); err != nil {
		t.Fatal(err)
	}
	if err := node.Do(func(ns.NetNS) error { return steer("vc") }); err != nil {
		t.Fatalf("steering: %v", err)
	}
	seen := serveResolver(t, resolver)
	learned := startChild(t, node)

	for _, c := range []struct {
		network          string
		client, resolver netip.Addr
		qtype            uint16
		seenFrom, learn  string
	}{
		{"udp", client4, resolver4, dns.TypeA, nodeUp4.String(), "dns4-it 10.77.1.2 192.0.2.1 30s"},
		{"tcp", client4, resolver4, dns.TypeA, nodeUp4.String(), "dns4-it 10.77.1.2 192.0.2.1 30s"},
		{"udp", client6, resolver6, dns.TypeAAAA, nodeUp6.String(), "dns6-it fd77:1::2 2001:db8::1 30s"},
		{"tcp", client6, resolver6, dns.TypeAAAA, nodeUp6.String(), "dns6-it fd77:1::2 2001:db8::1 30s"},
	} {
		waitReady(t, client, c.client, c.resolver)
		r, from, err := query(client, c.network, c.client, c.resolver, "api.example.com", c.qtype)
		if err != nil {
			t.Fatalf("%s from %s: %v", c.network, c.client, err)
		}
		if want := netip.AddrPortFrom(c.resolver, 53); from != want || len(r.Answer) != 1 {
			t.Errorf("%s from %s: answer %v from %s, want one record from %s", c.network, c.client, r.Answer, from, want)
		}
		if got := <-seen; got != c.seenFrom {
			t.Errorf("%s from %s: the resolver got the query from %s, want the node's %s", c.network, c.client, got, c.seenFrom)
		}
		select {
		case got := <-learned:
			if got != c.learn {
				t.Errorf("%s from %s: learned %q, want %q", c.network, c.client, got, c.learn)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s from %s: nothing learned", c.network, c.client)
		}
	}
}

// link joins a and b with a veth (name in a, eth0 in b), up, with the
// addresses (CIDR) a4 and a6 in a, b4 and b6 in b.
func link(t *testing.T, a, b *testkit.NS, name, a4, a6, b4, b6 string) {
	t.Helper()
	err := a.Do(func(ns.NetNS) error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(b.Fd()))}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s: %w", name, err)
		}
		return addrsUp(name, a4, a6)
	})
	if err == nil {
		err = b.Do(func(ns.NetNS) error { return addrsUp("eth0", b4, b6) })
	}
	if err != nil {
		t.Fatal(err)
	}
}

func addrsUp(name string, cidrs ...string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	for _, c := range cidrs {
		addr, err := netlink.ParseAddr(c)
		if err != nil {
			return err
		}
		addr.Flags |= unix.IFA_F_NODAD
		if err := netlink.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("add %s to %s: %w", c, name, err)
		}
	}
	return netlink.LinkSetUp(l)
}

func defaultRoutes(gws ...string) error {
	for _, gw := range gws {
		if err := netlink.RouteAdd(&netlink.Route{Gw: net.ParseIP(gw)}); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return nil
}

// steer sets up what tproxy needs, for both families: prerouting rules
// marking and diverting the DNS packets that come in on iif to the proxy's
// port, and the policy route delivering marked packets locally.
func steer(iif string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		table := c.AddTable(&nftables.Table{Name: "dnsproxy-it", Family: fam})
		chain := c.AddChain(&nftables.Chain{Name: "prerouting", Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle})
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: tproxyExprs(byte(fam), iif, proto)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	mask := uint32(itMark)
	for _, r := range []struct {
		family int
		all    string
	}{{netlink.FAMILY_V4, "0.0.0.0/0"}, {netlink.FAMILY_V6, "::/0"}} {
		rule := netlink.NewRule()
		rule.Family, rule.Mark, rule.Mask, rule.Table = r.family, itMark, &mask, itTable
		if err := netlink.RuleAdd(rule); err != nil {
			return fmt.Errorf("ip rule fwmark: %w", err)
		}
		_, dst, _ := net.ParseCIDR(r.all)
		route := &netlink.Route{Type: unix.RTN_LOCAL, Dst: dst, LinkIndex: lo.Attrs().Index, Table: itTable, Scope: netlink.SCOPE_HOST}
		if err := netlink.RouteAdd(route); err != nil {
			return fmt.Errorf("local route %s: %w", r.all, err)
		}
	}
	return nil
}

// tproxyExprs is `iifname IIF meta l4proto PROTO th dport 53 meta mark set
// MARK tproxy to :PORT accept`.
func tproxyExprs(fam byte, iif string, proto byte) []expr.Any {
	ifname := make([]byte, unix.IFNAMSIZ)
	copy(ifname, iif)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(53)},
		&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(itMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(itPort)},
		&expr.TProxy{Family: fam, TableFamily: fam, RegPort: 1},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

// serveResolver runs a resolver on port 53 (UDP and TCP, both families)
// in n answering api.example.com, and returns the source address of each
// query it gets.
func serveResolver(t *testing.T, n *testkit.NS) <-chan string {
	seen := make(chan string, 64)
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		a := new(dns.Msg).SetReply(q)
		if dns.CanonicalName(q.Question[0].Name) == "api.example.com." {
			rr := "api.example.com. 30 IN A 192.0.2.1"
			if q.Question[0].Qtype == dns.TypeAAAA {
				rr = "api.example.com. 30 IN AAAA 2001:db8::1"
			}
			a.Answer = rrs(t, rr)
			seen <- addrPort(w.RemoteAddr()).Addr().String()
		}
		_ = w.WriteMsg(a)
	})
	testkit.ServeDNS(t, n, handler)
	return seen
}

// startChild runs the proxy in node (this test binary, as childEnv says)
// until the test ends, and returns the Learns it prints.
func startChild(t *testing.T, node *testkit.NS) <-chan string {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %s %s", childEnv, itPort, client4, client6))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := testkit.StartIn(node, cmd); err != nil {
		t.Fatalf("start the proxy: %v", err)
	}
	lines := make(chan string, 64)
	go func() {
		for s := bufio.NewScanner(out); s.Scan(); {
			lines <- s.Text()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("the proxy: %v", err)
		}
	})
	return lines
}

// waitReady waits for the proxy to answer a query for a name no rule has.
func waitReady(t *testing.T, client *testkit.NS, src, dst netip.Addr) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := query(client, "udp", src, dst, "ready.test", dns.TypeA)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer through the proxy from %s to %s: %v", src, dst, err)
		}
	}
}

// query asks dst:53 for name from src in the client namespace, and returns
// the answer and where it came from.
func query(client *testkit.NS, network string, src, dst netip.Addr, name string, qtype uint16) (*dns.Msg, netip.AddrPort, error) {
	q := new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype)
	to := netip.AddrPortFrom(dst, 53)
	if network == "tcp" {
		conn, err := testkit.DialFrom(client, src, dst, "tcp", 53, time.Second)
		if err != nil {
			return nil, netip.AddrPort{}, err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		co := &dns.Conn{Conn: conn}
		if err := co.WriteMsg(q); err != nil {
			return nil, netip.AddrPort{}, err
		}
		r, err := co.ReadMsg()
		return r, addrPort(conn.RemoteAddr()), err
	}
	// An unconnected socket, to see where the answer comes from.
	var pc net.PacketConn
	err := client.Do(func(ns.NetNS) (err error) {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(src, 0).String())
		return err
	})
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	defer pc.Close()
	_ = pc.SetDeadline(time.Now().Add(time.Second))
	b, _ := q.Pack()
	if _, err := pc.WriteTo(b, net.UDPAddrFromAddrPort(to)); err != nil {
		return nil, netip.AddrPort{}, err
	}
	buf := make([]byte, dns.MaxMsgSize)
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	r := new(dns.Msg)
	return r, addrPort(from), r.Unpack(buf[:n])
}
