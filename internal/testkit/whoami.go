package testkit

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// Whoami is a TCP server that answers every connection with the source
// address it arrived from, as the server's kernel sees it, and closes. It
// shows what source NAT did to a connection on the way.
type Whoami struct {
	l    net.Listener
	wg   sync.WaitGroup
	Port int
}

// StartWhoami listens on port (0 picks one) on every address of netns.
func StartWhoami(netns ns.NetNS, port int) (*Whoami, error) {
	w := &Whoami{}
	var err error
	if w.l, w.Port, err = listenTCP(netns, port); err != nil {
		return nil, err
	}
	w.wg.Add(1)
	go serveTCP(w.l, &w.wg, func(c net.Conn) {
		peer := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		_, _ = io.WriteString(c, peer.String()+"\n")
	})
	return w, nil
}

// Close stops the server.
func (w *Whoami) Close() error {
	err := w.l.Close()
	w.wg.Wait()
	return err
}

// AskWhoami connects from netns (bound to src, when valid) to the Whoami
// server at dst:port and returns the source address the server saw.
func AskWhoami(netns ns.NetNS, src, dst netip.Addr, port int) (netip.Addr, error) {
	conn, err := DialFrom(netns, src, dst, "tcp", port, ProbeTimeout)
	if err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ProbeTimeout))
	b, err := io.ReadAll(io.LimitReader(conn, 128))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("read whoami answer from %s: %w", dst, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return netip.Addr{}, fmt.Errorf("whoami at %s answered nothing", dst)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("whoami answer from %s: %w", dst, err)
	}
	return a, nil
}
