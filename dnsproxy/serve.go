package dnsproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/errgroup"
)

const (
	// tcpIdle is how long a pod's TCP connection may wait for its next
	// query.
	tcpIdle = 10 * time.Second
	// expiryPeriod is how often expired index entries go.
	expiryPeriod = time.Second
)

// Serve runs the proxy until ctx ends: it listens on Config.Port (UDP and
// TCP, on every IPv4 and, when the kernel has IPv6, every IPv6 address),
// answers the queries steered to it, and expires its index every second.
// It returns nil when ctx ended, or the error that stopped a listener (the
// others stop with it).
func (p *Proxy) Serve(ctx context.Context) error {
	udp, tcp, err := p.listen(ctx)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range udp {
		g.Go(func() error { return p.serveUDP(gctx, c) })
	}
	for _, l := range tcp {
		g.Go(func() error { return p.serveTCP(gctx, l) })
	}
	g.Go(func() error {
		t := time.NewTicker(expiryPeriod)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.expire()
			case <-gctx.Done():
				closeAll(udp, tcp)
				return nil
			}
		}
	})
	return g.Wait()
}

// listen opens the transparent sockets of both families; IPv6 is left out
// when the kernel has none.
func (p *Proxy) listen(ctx context.Context) ([]*net.UDPConn, []net.Listener, error) {
	var udp []*net.UDPConn
	var tcp []net.Listener
	for _, fam := range []struct{ v, host string }{{"4", "0.0.0.0"}, {"6", "::"}} {
		addr := net.JoinHostPort(fam.host, strconv.Itoa(p.cfg.Port))
		pc, err := listenConfig.ListenPacket(ctx, "udp"+fam.v, addr)
		if fam.v == "6" && errors.Is(err, syscall.EAFNOSUPPORT) {
			p.cfg.Log.Info("dns proxy: no IPv6 in this kernel; serving IPv4 only")
			break
		}
		if err != nil {
			closeAll(udp, tcp)
			return nil, nil, fmt.Errorf("dns proxy: listen udp%s %s: %w", fam.v, addr, err)
		}
		udp = append(udp, pc.(*net.UDPConn))
		l, err := listenConfig.Listen(ctx, "tcp"+fam.v, addr)
		if err != nil {
			closeAll(udp, tcp)
			return nil, nil, fmt.Errorf("dns proxy: listen tcp%s %s: %w", fam.v, addr, err)
		}
		tcp = append(tcp, l)
	}
	return udp, tcp, nil
}

func closeAll(udp []*net.UDPConn, tcp []net.Listener) {
	for _, c := range udp {
		_ = c.Close()
	}
	for _, l := range tcp {
		_ = l.Close()
	}
}

// acquire takes a slot for a query or TCP connection, if one is free.
func (p *Proxy) acquire() bool {
	select {
	case p.inFlight <- struct{}{}:
		return true
	default:
		p.drop(dropBusy)
		return false
	}
}

func (p *Proxy) release() { <-p.inFlight }

// upstream is where a query the pod sent to orig goes; false when orig is
// the proxy's own port (the query was not steered here, and forwarding it
// would loop).
func (p *Proxy) upstream(orig netip.AddrPort) (netip.AddrPort, bool) {
	to := p.cfg.Upstream(orig)
	if to.Port() == uint16(p.cfg.Port) {
		p.drop(dropNotSteered)
		return to, false
	}
	return to, true
}

// serveUDP answers the datagrams of c, each on a goroutine of its own,
// until c closes.
func (p *Proxy) serveUDP(ctx context.Context, c *net.UDPConn) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		buf, oob := make([]byte, p.cfg.MaxMessage+1), make([]byte, oobSize)
		n, oobn, _, pod, err := c.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dns proxy: read %s: %w", c.LocalAddr(), err)
		}
		pod = netip.AddrPortFrom(pod.Addr().Unmap(), pod.Port())
		if n > p.cfg.MaxMessage {
			p.drop(dropOversized)
			continue
		}
		orig, err := origDst(oob[:oobn])
		if err != nil {
			p.drop(dropNotSteered)
			continue
		}
		if !p.acquire() {
			continue
		}
		wg.Go(func() {
			defer p.release()
			p.answerUDP(ctx, pod, orig, buf[:n])
		})
	}
}

// answerUDP answers the query pod sent to orig: the answer goes back from
// orig, as if the resolver had sent it.
func (p *Proxy) answerUDP(ctx context.Context, pod, orig netip.AddrPort, query []byte) {
	to, ok := p.upstream(orig)
	if !ok {
		return
	}
	forward := func(ctx context.Context, q []byte) ([]byte, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "udp", to.String())
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", to, err)
		}
		defer c.Close()
		return roundTrip(ctx, c, q)
	}
	p.handle(ctx, "udp", pod.Addr(), query, forward, func(a []byte) error { return sendFrom(ctx, orig, pod, a) })
}

// roundTrip writes query on c and reads one message back (length-prefixed
// on TCP), within ctx.
func roundTrip(ctx context.Context, c net.Conn, query []byte) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	co := &dns.Conn{Conn: c}
	if _, err := co.Write(query); err != nil {
		return nil, fmt.Errorf("send to %s: %w", c.RemoteAddr(), err)
	}
	buf := answerBufs.Get().(*[]byte)
	defer answerBufs.Put(buf)
	n, err := co.Read(*buf)
	if err != nil {
		return nil, fmt.Errorf("read from %s: %w", c.RemoteAddr(), err)
	}
	return bytes.Clone((*buf)[:n]), nil
}

// answerBufs hold the largest answer a resolver may send.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, dns.MaxMsgSize); return &b }}

// serveTCP serves the connections l accepts, each on a goroutine of its
// own, until l closes.
func (p *Proxy) serveTCP(ctx context.Context, l net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dns proxy: accept on %s: %w", l.Addr(), err)
		}
		if !p.acquire() {
			_ = c.Close()
			continue
		}
		wg.Go(func() {
			defer p.release()
			p.serveConn(ctx, c)
		})
	}
}

// serveConn answers the queries of one TCP connection of a pod, in order,
// through one connection to the resolver it addressed (the connection's
// local address), until the pod closes it, idles, or a query is dropped.
func (p *Proxy) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	to, ok := p.upstream(addrPort(c.LocalAddr()))
	if !ok {
		return
	}
	var up net.Conn
	defer func() {
		if up != nil {
			_ = up.Close()
		}
	}()
	forward := func(ctx context.Context, q []byte) ([]byte, error) {
		if up == nil {
			var err error
			if up, err = (&net.Dialer{}).DialContext(ctx, "tcp", to.String()); err != nil {
				return nil, fmt.Errorf("dial %s: %w", to, err)
			}
		}
		return roundTrip(ctx, up, q)
	}
	pod := &dns.Conn{Conn: c}
	reply := func(a []byte) error {
		_ = c.SetWriteDeadline(time.Now().Add(p.cfg.UpstreamTimeout))
		_, err := pod.Write(a)
		return err
	}
	buf := make([]byte, p.cfg.MaxMessage)
	for {
		_ = c.SetReadDeadline(time.Now().Add(tcpIdle))
		n, err := pod.Read(buf)
		if errors.Is(err, io.ErrShortBuffer) {
			p.drop(dropOversized)
		}
		if err != nil || !p.handle(ctx, "tcp", addrPort(c.RemoteAddr()).Addr(), buf[:n], forward, reply) {
			return
		}
	}
}
