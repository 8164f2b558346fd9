package kube

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// A process in a test-made network namespace cannot reach the root
// namespace's loopback, where the API server listens. The relay bridges the
// two without touching the root namespace: a unix socket (which lives in the
// filesystem, so every namespace can dial it) forwards to the API server's
// loopback port, and inside each node namespace a listener on
// 127.0.0.1:<port> forwards to that socket. The serving certificate names
// 127.0.0.1, so TLS still verifies. Everything runs as goroutines of the
// test process; a listener created inside a namespace stays there.

// relay is the unix socket and the per-namespace listeners feeding it.
type relay struct {
	sock   string
	target string
	unix   net.Listener
	own    string // temporary directory holding sock, if any

	mu     sync.Mutex
	inNS   map[string]*nsRelay // by namespace path
	conns  map[net.Conn]struct{}
	closed bool
}

type nsRelay struct {
	l          net.Listener
	kubeconfig string
}

// RelaySocket starts the relay if needed and returns its unix socket path:
// connecting there is connecting to the API server's TLS port.
func (c *Cluster) RelaySocket() (string, error) {
	r, err := c.ensureRelay()
	if err != nil {
		return "", err
	}
	return r.sock, nil
}

// KubeconfigFor makes the API server reachable inside the network namespace
// at netnsPath (e.g. /var/run/netns/<name>) on 127.0.0.1:<port>, bringing
// that namespace's loopback up if it is down, and returns the path of an
// admin kubeconfig whose server is that address. Calling it again for the
// same path returns the same kubeconfig. The listener keeps the namespace
// alive until StopRelay(netnsPath) or Stop.
func (c *Cluster) KubeconfigFor(netnsPath string) (string, error) {
	r, err := c.ensureRelay()
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	if nr, ok := r.inNS[netnsPath]; ok {
		r.mu.Unlock()
		return nr.kubeconfig, nil
	}
	r.mu.Unlock()

	l, err := listenIn(netnsPath, c.apiPort)
	if err != nil {
		return "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	name := fmt.Sprintf("netns-%s-%d", strings.ReplaceAll(filepath.Base(netnsPath), ".", "_"), port)
	path := filepath.Join(c.Dir, name+".kubeconfig")
	if err := WriteKubeconfig(path, "https://"+hostPort(port), c.pki.caPEM, c.pki.adminCertPEM, c.pki.adminKeyPEM); err != nil {
		l.Close()
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		l.Close()
		return "", errors.New("relay closed")
	}
	if nr, ok := r.inNS[netnsPath]; ok { // lost a race with another caller
		l.Close()
		return nr.kubeconfig, nil
	}
	r.inNS[netnsPath] = &nsRelay{l: l, kubeconfig: path}
	go r.serve(l, func() (net.Conn, error) { return net.DialTimeout("unix", r.sock, 2*time.Second) })
	return path, nil
}

// StopRelay closes the listener KubeconfigFor made in netnsPath, releasing
// the namespace; open connections through it are closed by Stop.
func (c *Cluster) StopRelay(netnsPath string) {
	c.mu.Lock()
	r := c.relay
	c.mu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	nr := r.inNS[netnsPath]
	delete(r.inNS, netnsPath)
	r.mu.Unlock()
	if nr != nil {
		nr.l.Close()
	}
}

func (c *Cluster) ensureRelay() (*relay, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil, errors.New("relay: cluster stopped")
	}
	if c.relay != nil {
		return c.relay, nil
	}
	r := &relay{
		target: hostPort(c.apiPort),
		sock:   filepath.Join(c.Dir, "apiserver.sock"),
		inNS:   map[string]*nsRelay{},
		conns:  map[net.Conn]struct{}{},
	}
	if len(r.sock) > 100 { // sun_path holds 108 bytes
		dir, err := os.MkdirTemp("", "weir-relay-")
		if err != nil {
			return nil, fmt.Errorf("relay dir: %w", err)
		}
		r.own, r.sock = dir, filepath.Join(dir, "apiserver.sock")
	}
	l, err := net.Listen("unix", r.sock)
	if err != nil {
		return nil, fmt.Errorf("relay listen %s: %w", r.sock, err)
	}
	r.unix = l
	go r.serve(l, func() (net.Conn, error) { return net.DialTimeout("tcp", r.target, 2*time.Second) })
	c.relay = r
	return r, nil
}

// listenIn listens on 127.0.0.1:port inside the namespace (any free port if
// that one is taken), after making sure its loopback is up.
func listenIn(netnsPath string, port int) (net.Listener, error) {
	target, err := ns.GetNS(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	defer target.Close()
	var l net.Listener
	err = target.Do(func(ns.NetNS) error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		if lo.Attrs().Flags&net.FlagUp == 0 {
			if err := netlink.LinkSetUp(lo); err != nil {
				return fmt.Errorf("set lo up: %w", err)
			}
		}
		if l, err = net.Listen("tcp", hostPort(port)); err != nil {
			l, err = net.Listen("tcp", "127.0.0.1:0")
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("relay listen in %s: %w", netnsPath, err)
	}
	return l, nil
}

// serve accepts on l and pipes each connection to a fresh dial().
func (r *relay) serve(l net.Listener, dial func() (net.Conn, error)) {
	for {
		in, err := l.Accept()
		if err != nil {
			return // closed
		}
		go func() {
			out, err := dial()
			if err != nil {
				in.Close() // e.g. the API server is stopped: the client sees EOF
				return
			}
			if !r.track(in, out) {
				return
			}
			pipe(in, out)
			r.untrack(in, out)
		}()
	}
}

func (r *relay) track(conns ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *relay) untrack(conns ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range conns {
		delete(r.conns, c)
	}
}

// close stops every listener and connection of the relay.
func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	var closers []io.Closer
	closers = append(closers, r.unix)
	for _, nr := range r.inNS {
		closers = append(closers, nr.l)
	}
	for c := range r.conns {
		closers = append(closers, c)
	}
	r.inNS, r.conns = map[string]*nsRelay{}, map[net.Conn]struct{}{}
	r.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
	if r.own != "" {
		os.RemoveAll(r.own)
	}
}

// pipe copies both ways until both directions end, passing half-closes on.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}
