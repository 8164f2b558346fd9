package harness

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
)

// ProbeTimeout bounds every probe exchange.
const ProbeTimeout = 2 * time.Second

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
	err := netns.Do(func(ns.NetNS) error {
		l, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		if err != nil {
			return fmt.Errorf("listen tcp: %w", err)
		}
		e.tcp = l
		e.Port = l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("[::]:%d", e.Port))
		if err != nil {
			l.Close()
			return fmt.Errorf("listen udp: %w", err)
		}
		e.udp = u
		return nil
	})
	if err != nil {
		return nil, err
	}
	e.wg.Add(2)
	go e.serveTCP()
	go e.serveUDP()
	return e, nil
}

func (e *Echo) serveTCP() {
	defer e.wg.Done()
	for {
		c, err := e.tcp.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(ProbeTimeout))
			_, _ = io.Copy(c, io.LimitReader(c, 1<<16))
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
