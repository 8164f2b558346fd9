package controller

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/dnsproxy"
	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// Socket limits. A request is one short line (agentapi.MaxRequestSize at
// most): a client that sends a longer one, or nothing for too long, is
// answered with an error or dropped, and connections beyond
// maxSocketConns are closed at once, so no local client can make the
// agent grow or hold its socket.
const (
	// maxAnnounceWait caps how long one plugin request may hold a
	// connection.
	maxAnnounceWait = 30 * time.Second
	// maxSocketConns is how many connections are served at once.
	maxSocketConns = 64
	// requestReadTimeout is how long a client has to send its request.
	requestReadTimeout = 5 * time.Second
	// refusedLogEvery spaces the warnings about refused connections.
	refusedLogEvery = 10 * time.Second
)

// ServeSocket answers plugin and weirctl requests on a unix socket at path
// until ctx ends. Only root on the node may program pods into the
// ruleset: the socket is created inside a directory that only the agent's
// user (root) may enter (see privateDir), so it is never reachable by
// anyone else, not even for a moment.
func (a *Agent) ServeSocket(ctx context.Context, path string) error {
	a.init()
	if err := privateDir(filepath.Dir(path), filepath.Base(path)); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	defer l.Close()
	go func() { <-ctx.Done(); l.Close() }()
	slots := make(chan struct{}, cmp.Or(a.sockMaxConns, maxSocketConns))
	var warned time.Time
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		select {
		case slots <- struct{}{}:
			go func() {
				defer func() { <-slots }()
				a.handle(ctx, c)
			}()
			continue
		default:
		}
		a.mu.Lock()
		a.st.RefusedConns++
		refused := a.st.RefusedConns
		a.mu.Unlock()
		refuseConn(c)
		if time.Since(warned) >= refusedLogEvery {
			warned = time.Now()
			a.Log.Warn("agent socket busy: connection closed unserved", "max", cap(slots), "refused", refused)
		}
	}
}

// refuseConn tells a client that came beyond the limit why it is turned
// away, without waiting for it, and hangs up.
func refuseConn(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	b, _ := json.Marshal(agentapi.Response{Error: "agent busy: too many connections, try again"})
	_, _ = c.Write(append(b, '\n'))
	c.Close()
}

// privateDir makes dir, the directory of the socket named socket, one
// that only this user (root, for the agent) may enter: it is created 0700
// when missing. An existing one must be a directory (not a symlink) owned
// by this user; when group or others may enter it, it is tightened to 0700
// if it holds nothing but a stale socket (a hostPath DirectoryOrCreate is
// made 0755) and refused otherwise, since tightening a shared directory
// such as /run would break the node.
func privateDir(dir, socket string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create socket dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create socket dir: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if fi, lerr := os.Lstat(dir); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("socket dir %s is a symlink, want a directory of its own", dir)
		}
		return fmt.Errorf("open socket dir: %w", &fs.PathError{Op: "open", Path: dir, Err: err})
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat socket dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("stat socket dir %s: no owner in %T", dir, fi.Sys())
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("socket dir %s is owned by uid %d, want %d (the agent's user)", dir, st.Uid, euid)
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read socket dir: %w", err)
	}
	if len(names) > 1 || len(names) == 1 && names[0] != socket {
		return fmt.Errorf("socket dir %s has mode %#o and holds other files (%s): give the socket a directory of its own",
			dir, fi.Mode().Perm(), strings.Join(names, ", "))
	}
	if err := f.Chmod(0o700); err != nil {
		return fmt.Errorf("chmod socket dir: %w", err)
	}
	return nil
}

func (a *Agent) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	now := time.Now()
	_ = c.SetDeadline(now.Add(maxAnnounceWait + time.Second))
	_ = c.SetReadDeadline(now.Add(cmp.Or(a.sockReadTimeout, requestReadTimeout)))
	line, err := bufio.NewReaderSize(c, agentapi.MaxRequestSize).ReadSlice('\n')
	var resp agentapi.Response
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		resp.Error = fmt.Sprintf("request longer than %d bytes", agentapi.MaxRequestSize)
	case err != nil:
		return // gone, or silent past the read timeout
	default:
		var req agentapi.Request
		if err := json.Unmarshal(line, &req); err != nil {
			resp.Error = "decode request: " + err.Error()
		} else if result, err := a.answer(ctx, req); err != nil {
			resp.Error = err.Error()
		} else if result != nil {
			resp.Result, _ = json.Marshal(result)
		}
	}
	b, _ := json.Marshal(resp)
	_, _ = c.Write(append(b, '\n'))
}

func (a *Agent) answer(ctx context.Context, req agentapi.Request) (any, error) {
	switch req.Op {
	case agentapi.OpPodAdded:
		var ips []netip.Addr
		for _, s := range req.IPs {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("bad pod address %q", s)
			}
			ips = append(ips, ip.Unmap())
		}
		ctx, cancel := context.WithTimeout(ctx, maxAnnounceWait)
		defer cancel()
		start := time.Now()
		err := a.Announce(ctx, req.Namespace, req.Name, ips)
		a.Metrics.observeAnnouncement(err)
		attrs := []any{"pod", req.Namespace + "/" + req.Name, "containerID", req.ContainerID, "ips", req.IPs,
			"wait", time.Since(start)}
		if err != nil {
			// The plugin fails the pod's ADD (fail-closed, the runtime
			// retries) or wires it outside its policies (fail-open).
			a.Log.Warn("pod announced by plugin not confirmed", append(attrs, "result", announceResult(err), "err", err)...)
		} else {
			a.Log.Info("pod announced by plugin", attrs...)
		}
		return nil, err
	case agentapi.OpStatus:
		return a.Status(), nil
	case agentapi.OpRules:
		ctx, cancel := context.WithTimeout(ctx, countersTimeout)
		defer cancel()
		if values, err := a.Applier.Counters(ctx); err == nil {
			return a.Ruleset().StringWithCounters(values), nil
		}
		return a.Ruleset().String(), nil
	case agentapi.OpExplain:
		return a.explain(req)
	case agentapi.OpAudit:
		return a.audit()
	}
	return nil, fmt.Errorf("unknown op %q", req.Op)
}

// explain traces a connection through the ruleset the kernel has. src and
// dst are IP addresses or namespace/pod names, resolved in the snapshot
// that ruleset was compiled from. The learned-address sets of domainNames
// rules hold what the DNS proxy says src learned of dst.
func (a *Agent) explain(req agentapi.Request) (agentapi.Explanation, error) {
	rs, snap, _ := a.published()
	src, dst, err := resolvePair(snap, req.Src, req.Dst)
	if err != nil {
		return agentapi.Explanation{}, err
	}
	proto, err := protoNumber(req.Protocol)
	if err != nil {
		return agentapi.Explanation{}, err
	}
	if req.Port < 0 || req.Port > 65535 {
		return agentapi.Explanation{}, fmt.Errorf("port %d out of range", req.Port)
	}
	var learned []dnsproxy.Learned
	if a.DNSProxy != nil {
		learned = a.DNSProxy.Explain(src, dst)
	}
	p := explainPacket(snap, src, dst, proto, uint16(req.Port))
	p.Learned = learnedBy(src, dst, learned)
	v, steps := ruleset.Trace(rs, p)
	e := agentapi.Explanation{Allowed: v == ruleset.VerdictAccept, Src: src.String(), Dst: dst.String(), Steps: make([]agentapi.ExplainStep, len(steps)),
		Learned: explainLearned(learned)}
	for i, s := range steps {
		e.Steps[i] = explainStep(s)
	}
	return e, nil
}

// explainPacket is the packet explain traces: from a local pod to its
// node's own address, one the node receives (input hook) on the pod's
// interface; any other, one it forwards.
func explainPacket(s policy.Snapshot, src, dst netip.Addr, proto uint8, port uint16) ruleset.Packet {
	p := ruleset.Packet{Src: src, Dst: dst, Proto: proto, DPort: port}
	if !slices.Contains(s.Node.Addrs, dst) {
		return p
	}
	for _, pod := range s.Pods {
		if pod.Node == s.Node.Name && !pod.HostNetwork && slices.Contains(pod.IPs, src) {
			prefix := s.PodInterfacePrefix
			if prefix == "" {
				prefix = policy.DefaultPodInterfacePrefix
			}
			p.ToHost, p.InIface = true, prefix+"0"
			break
		}
	}
	return p
}

// explainStep is a step of a trace as explain answers it.
func explainStep(s ruleset.Step) agentapi.ExplainStep {
	return agentapi.ExplainStep{Chain: s.Chain, Rule: s.Index, Verdict: s.Verdict.String(), Text: s.String(), Owner: explainOwner(s.Owner)}
}

// explainOwner is a rule's owner as explain answers it; nil for OwnerNone.
func explainOwner(o ruleset.Owner) *agentapi.ExplainOwner {
	if o.Kind == ruleset.OwnerNone {
		return nil
	}
	out := &agentapi.ExplainOwner{Kind: o.Kind.String(), Tier: string(o.Tier), Namespace: o.Namespace, Policy: o.Policy,
		Direction: string(o.Direction), RuleName: o.RuleName, Action: o.Action, Text: o.String()}
	if o.Kind == ruleset.OwnerPolicyRule {
		out.Rule = &o.Rule
	}
	return out
}

// resolvePair resolves the two ends of a connection in s.
func resolvePair(s policy.Snapshot, srcRef, dstRef string) (src, dst netip.Addr, err error) {
	if src, err = resolve(s, srcRef, dstRef); err != nil {
		return src, dst, fmt.Errorf("source: %w", err)
	}
	if dst, err = resolve(s, dstRef, srcRef); err != nil {
		return src, dst, fmt.Errorf("destination: %w", err)
	}
	return src, dst, nil
}

// resolve turns an address or "namespace/pod" into an address, picking the
// pod address of the same family as other when other is an address.
func resolve(s policy.Snapshot, ref, other string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(ref); err == nil {
		return ip.Unmap(), nil
	}
	ns, name, ok := strings.Cut(ref, "/")
	if !ok {
		return netip.Addr{}, fmt.Errorf("%q is neither an IP address nor namespace/pod", ref)
	}
	want6 := false
	if o, err := netip.ParseAddr(other); err == nil {
		want6 = o.Is6()
	}
	for _, p := range s.Pods {
		if p.Namespace != ns || p.Name != name {
			continue
		}
		for _, ip := range p.IPs {
			if ip.Is6() == want6 {
				return ip, nil
			}
		}
		if len(p.IPs) > 0 {
			return p.IPs[0], nil
		}
	}
	return netip.Addr{}, fmt.Errorf("pod %s has no known address", ref)
}

func protoNumber(s string) (uint8, error) {
	if s == "" {
		return ruleset.ProtoTCP, nil
	}
	if n, ok := ruleset.ProtoNumber(s); ok {
		return n, nil
	}
	return 0, fmt.Errorf("protocol %q: want TCP, UDP or SCTP", s)
}
