package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// ProbeTimeout bounds every probe exchange.
const ProbeTimeout = 2 * time.Second

// Probe is one connection attempt between two endpoints, named as the
// test names them (a pod, a host, the node), and whether it should get
// through.
type Probe struct {
	From, To string
	Proto    string // tcp or udp
	Port     int
	V6       bool
	Want     bool // allowed
}

func (p Probe) String() string {
	fam := "v4"
	if p.V6 {
		fam = "v6"
	}
	return fmt.Sprintf("%s -> %s %s/%d (%s)", p.From, p.To, p.Proto, p.Port, fam)
}

// Echo is a TCP and UDP echo server bound inside a namespace.
type Echo struct {
	tcp  net.Listener
	udp  net.PacketConn
	wg   sync.WaitGroup
	Port int
}

// StartEcho listens on port (0 picks one) for TCP and UDP on every address
// of netns and echoes what it receives. Sockets belong to the namespace
// they were created in, so serving them from any thread is fine.
func StartEcho(netns ns.NetNS, port int) (*Echo, error) {
	e := &Echo{}
	var err error
	if e.tcp, e.Port, err = listenTCP(netns, port); err != nil {
		return nil, err
	}
	err = netns.Do(func(ns.NetNS) error {
		e.udp, err = net.ListenPacket("udp", fmt.Sprintf("[::]:%d", e.Port))
		return err
	})
	if err != nil {
		e.tcp.Close()
		return nil, fmt.Errorf("listen udp: %w", err)
	}
	e.wg.Add(2)
	go serveTCP(e.tcp, &e.wg, func(c net.Conn) { _, _ = io.Copy(c, io.LimitReader(c, 1<<16)) })
	go e.serveUDP()
	return e, nil
}

// listenTCP listens on port (0 picks one) on every address of netns and
// returns the listener with its port.
func listenTCP(netns ns.NetNS, port int) (net.Listener, int, error) {
	var l net.Listener
	err := netns.Do(func(ns.NetNS) error {
		var err error
		l, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("listen tcp: %w", err)
	}
	return l, l.Addr().(*net.TCPAddr).Port, nil
}

// serveTCP accepts on l until it is closed and hands each connection, with
// a ProbeTimeout deadline, to handle in a goroutine of its own; it closes
// the connection when handle returns. It marks wg done when l is closed.
func serveTCP(l net.Listener, wg *sync.WaitGroup, handle func(net.Conn)) {
	defer wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(ProbeTimeout))
			handle(c)
		}()
	}
}

func (e *Echo) serveUDP() {
	defer e.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := e.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = e.udp.WriteTo(buf[:n], from)
	}
}

// Close stops the server.
func (e *Echo) Close() error {
	err := errors.Join(e.tcp.Close(), e.udp.Close())
	e.wg.Wait()
	return err
}

// ProbeTCP connects from netns to dst:port, sends a token and expects it
// echoed back. It returns the local address the connection came from.
func ProbeTCP(netns ns.NetNS, dst netip.Addr, port int) (netip.Addr, error) {
	var c net.Conn
	err := netns.Do(func(ns.NetNS) error {
		var err error
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(dst, uint16(port)).String(), ProbeTimeout)
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("tcp connect %s port %d: %w", dst, port, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ProbeTimeout))
	token := []byte("weir-probe " + dst.String())
	if _, err := c.Write(token); err != nil {
		return netip.Addr{}, fmt.Errorf("tcp write to %s: %w", dst, err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("tcp read from %s: %w", dst, err)
	}
	if !bytes.Equal(got, token) {
		return netip.Addr{}, fmt.Errorf("tcp echo from %s: got %q, want %q", dst, got, token)
	}
	return c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(), nil
}

// ProbeUDP sends a datagram from netns to dst:port and expects it echoed.
// It tries a few times: the first datagram may wait on neighbour discovery.
func ProbeUDP(netns ns.NetNS, dst netip.Addr, port int) error {
	var c net.Conn
	err := netns.Do(func(ns.NetNS) error {
		var err error
		c, err = net.Dial("udp", netip.AddrPortFrom(dst, uint16(port)).String())
		return err
	})
	if err != nil {
		return fmt.Errorf("udp dial %s port %d: %w", dst, port, err)
	}
	defer c.Close()
	token := []byte("weir-udp " + dst.String())
	buf := make([]byte, 1500)
	var last error
	for range 5 {
		if _, err := c.Write(token); err != nil {
			last = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(ProbeTimeout / 4))
		n, err := c.Read(buf)
		if err != nil {
			last = err
			continue
		}
		if !bytes.Equal(buf[:n], token) {
			return fmt.Errorf("udp echo from %s: got %q, want %q", dst, buf[:n], token)
		}
		return nil
	}
	return fmt.Errorf("udp probe %s port %d: no echo: %w", dst, port, last)
}

// DialFrom connects from netns to dst:port over proto ("tcp" or "udp") with
// the local address bound to src (when valid), so the far end sees the
// address under test rather than whichever one routing would pick.
func DialFrom(netns ns.NetNS, src, dst netip.Addr, proto string, port int, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := netns.Do(func(ns.NetNS) error {
		d := net.Dialer{Timeout: timeout}
		if src.IsValid() {
			if proto == "udp" {
				d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
			} else {
				d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
			}
		}
		var err error
		conn, err = d.Dial(proto, netip.AddrPortFrom(dst, uint16(port)).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s dial %s -> %s port %d: %w", proto, src, dst, port, err)
	}
	return conn, nil
}

// Exchange connects like DialFrom and expects a token echoed back by the
// Echo server at dst (one write, one read, each bounded by timeout).
func Exchange(netns ns.NetNS, src, dst netip.Addr, proto string, port int, timeout time.Duration) error {
	conn, err := DialFrom(netns, src, dst, proto, port, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	return Echoes(conn, dst, timeout)
}

// Echoes writes a token on conn, a connection to the Echo server at dst,
// and expects it back (one write, one read, each bounded by timeout).
func Echoes(conn net.Conn, dst netip.Addr, timeout time.Duration) error {
	proto := conn.LocalAddr().Network()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	token := []byte("weir " + conn.LocalAddr().String())
	if _, err := conn.Write(token); err != nil {
		return fmt.Errorf("%s write to %s: %w", proto, dst, err)
	}
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil {
		return fmt.Errorf("%s read from %s: %w", proto, dst, err)
	}
	if !bytes.Equal(buf[:n], token) {
		return fmt.Errorf("%s echo from %s: got %q, want %q", proto, dst, buf[:n], token)
	}
	return nil
}

// Retransmits returns how many segments the kernel has sent again on
// conn, a TCP connection, its SYN included (tcpi_total_retrans): a SYN
// sent again means the first was lost, or dropped by a firewall.
func Retransmits(conn *net.TCPConn) (uint32, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info *unix.TCPInfo
	var infoErr error
	if err := rc.Control(func(fd uintptr) {
		info, infoErr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return 0, err
	}
	if infoErr != nil {
		return 0, fmt.Errorf("TCP_INFO: %w", infoErr)
	}
	return info.Total_retrans, nil
}

// Parallel calls fn(i) for every i in [0, n), at most limit at a time, and
// returns when all calls have returned. fn runs on goroutines of its own:
// it must not call t.Fatal or t.FailNow.
func Parallel(n, limit int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(limit, 1))
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}
