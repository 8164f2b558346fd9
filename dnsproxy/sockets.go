package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenConfig makes the proxy's listening sockets: transparent (they take
// the connections and datagrams tproxy steers to them, addressed to
// others) and, for UDP, reporting each datagram's original destination.
// They reuse their address (as Go's TCP listeners do anyway), so that a
// reply socket may bind an original destination on the proxy's own port:
// a query sent to the proxy directly, as tests do, redirected by
// Config.Upstream.
var listenConfig = net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
	return setOpts(c, network, true)
}}

// replyDialer makes the socket that sends a UDP answer from the resolver's
// address and port: transparent, to bind an address that is not the
// node's, and reusing the address, as concurrent answers from one
// resolver bind it at once.
var replyDialer = net.Dialer{Control: func(network, _ string, c syscall.RawConn) error {
	return setOpts(c, network, false)
}}

// setOpts sets SO_REUSEADDR and IP(V6)_TRANSPARENT on the socket of
// network ("udp4", "tcp6", ...), and with origDst on a UDP socket
// IP(V6)_RECVORIGDSTADDR.
func setOpts(c syscall.RawConn, network string, origDst bool) error {
	level, transparent, recvOrig := unix.SOL_IP, unix.IP_TRANSPARENT, unix.IP_RECVORIGDSTADDR
	if strings.HasSuffix(network, "6") {
		level, transparent, recvOrig = unix.SOL_IPV6, unix.IPV6_TRANSPARENT, unix.IPV6_RECVORIGDSTADDR
	}
	type opt struct{ level, name int }
	opts := []opt{{unix.SOL_SOCKET, unix.SO_REUSEADDR}, {level, transparent}}
	if origDst && strings.HasPrefix(network, "udp") {
		opts = append(opts, opt{level, recvOrig})
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		for _, o := range opts {
			if serr = unix.SetsockoptInt(int(fd), o.level, o.name, 1); serr != nil {
				serr = fmt.Errorf("setsockopt %d/%d on %s socket: %w", o.level, o.name, network, serr)
				return
			}
		}
	})
	return errors.Join(err, serr)
}

// origDst reads a datagram's original destination from its control
// messages (IP_ORIGDSTADDR or IPV6_ORIGDSTADDR: a sockaddr_in or
// sockaddr_in6).
func origDst(oob []byte) (netip.AddrPort, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("parse control messages: %w", err)
	}
	for _, m := range msgs {
		d := m.Data
		switch {
		case m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_ORIGDSTADDR && len(d) >= unix.SizeofSockaddrInet4:
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(d[4:8])), binary.BigEndian.Uint16(d[2:4])), nil
		case m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_ORIGDSTADDR && len(d) >= unix.SizeofSockaddrInet6:
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte(d[8:24])).Unmap(), binary.BigEndian.Uint16(d[2:4])), nil
		}
	}
	return netip.AddrPort{}, errors.New("no original destination in the control messages")
}

// oobSize holds one original-destination control message.
var oobSize = unix.CmsgSpace(unix.SizeofSockaddrInet6)

// sendFrom sends msg to to from the address and port from, which need not
// be the node's.
func sendFrom(ctx context.Context, from, to netip.AddrPort, msg []byte) error {
	d := replyDialer
	d.LocalAddr = net.UDPAddrFromAddrPort(from)
	c, err := d.DialContext(ctx, "udp", to.String())
	if err != nil {
		return fmt.Errorf("socket from %s to %s: %w", from, to, err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("send from %s to %s: %w", from, to, err)
	}
	return nil
}

// addrPort is the address and port of a net.Addr of a UDP or TCP socket,
// IPv4-mapped addresses unmapped.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// CheckReplyPrivileges binds a UDP socket the way an answer's is bound,
// to port 53 of an address that is not the node's (192.0.2.53, TEST-NET-1;
// nothing is sent), and reports what is missing: answering a pod from its
// resolver's address and port needs CAP_NET_ADMIN or CAP_NET_RAW
// (IP_TRANSPARENT) and CAP_NET_BIND_SERVICE (a port below 1024). Without
// them every answer would be dropped after the resolver gave it.
func CheckReplyPrivileges() error {
	lc := net.ListenConfig{Control: replyDialer.Control}
	conn, err := lc.ListenPacket(context.Background(), "udp4", "192.0.2.53:53")
	if err != nil {
		return fmt.Errorf("dns proxy: cannot bind an answer's socket to a resolver's address and port 53 (needs CAP_NET_ADMIN and CAP_NET_BIND_SERVICE): %w", err)
	}
	return conn.Close()
}
