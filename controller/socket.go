package controller

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/nft"
)

// maxAnnounceWait caps how long one plugin request may hold a connection.
const maxAnnounceWait = 30 * time.Second

// ServeSocket answers plugin and weirctl requests on a unix socket at path
// until ctx ends. The socket is created 0600: only root on the node may
// program pods into the ruleset.
func (a *Agent) ServeSocket(ctx context.Context, path string) error {
	a.init()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create socket dir: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("chmod socket: %w", err)
	}
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		go a.handle(ctx, c)
	}
}

func (a *Agent) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(maxAnnounceWait + time.Second))
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return
	}
	var req agentapi.Request
	resp := agentapi.Response{}
	if err := json.Unmarshal(line, &req); err != nil {
		resp.Error = "decode request: " + err.Error()
	} else if result, err := a.answer(ctx, req); err != nil {
		resp.Error = err.Error()
	} else if result != nil {
		resp.Result, _ = json.Marshal(result)
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
		a.Log.Info("pod announced by plugin", "pod", req.Namespace+"/"+req.Name, "ips", req.IPs,
			"wait", time.Since(start), "err", err)
		return nil, err
	case agentapi.OpStatus:
		return a.Status(), nil
	case agentapi.OpRules:
		if cr, ok := a.Applier.(CounterReader); ok {
			if values, err := cr.Counters(); err == nil {
				return a.Ruleset().StringWithCounters(values), nil
			}
		}
		return a.Ruleset().String(), nil
	case agentapi.OpExplain:
		return a.explain(req)
	}
	return nil, fmt.Errorf("unknown op %q", req.Op)
}

// Explanation is the answer to an explain request.
type Explanation struct {
	Allowed bool     `json:"allowed"`
	Src     string   `json:"src"`
	Dst     string   `json:"dst"`
	Steps   []string `json:"steps"`
}

// explain traces a connection through the ruleset the kernel has. src and
// dst are IP addresses or namespace/pod names, resolved in the snapshot
// that ruleset was compiled from.
func (a *Agent) explain(req agentapi.Request) (Explanation, error) {
	a.mu.Lock()
	rs, snap := a.rs, a.snap
	a.mu.Unlock()
	src, dst, err := resolvePair(snap, req.Src, req.Dst)
	if err != nil {
		return Explanation{}, err
	}
	proto, err := protoNumber(req.Protocol)
	if err != nil {
		return Explanation{}, err
	}
	if req.Port < 0 || req.Port > 65535 {
		return Explanation{}, fmt.Errorf("port %d out of range", req.Port)
	}
	v, steps := nft.Trace(rs, nft.Packet{Src: src, Dst: dst, Proto: proto, DPort: uint16(req.Port)})
	return Explanation{Allowed: v == nft.VerdictAccept, Src: src.String(), Dst: dst.String(), Steps: steps}, nil
}

// resolvePair resolves the two ends of a connection in s.
func resolvePair(s nft.Snapshot, srcRef, dstRef string) (src, dst netip.Addr, err error) {
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
func resolve(s nft.Snapshot, ref, other string) (netip.Addr, error) {
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
	switch strings.ToUpper(s) {
	case "", "TCP":
		return nft.ProtoTCP, nil
	case "UDP":
		return nft.ProtoUDP, nil
	case "SCTP":
		return nft.ProtoSCTP, nil
	}
	return 0, fmt.Errorf("protocol %q: want TCP, UDP or SCTP", s)
}
