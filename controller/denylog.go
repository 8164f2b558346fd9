package controller

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"

	nflog "github.com/florianl/go-nflog/v2"

	"github.com/weir-cni/weir/policy"
	"github.com/weir-cni/weir/ruleset"
)

// This file touches the kernel: it reads the packets the ruleset logs
// before an isolation drop (policy.DeniedLog: NFLOG group, rate-limited per
// selection chain) and logs each one with its policy context.

// DeniedLogger logs denied packets, explained with the policies of the
// selection chain that logged them before their drop in the ruleset
// Ruleset returns (the last applied one); Run reads the NFLOG group.
type DeniedLogger struct {
	Group   uint16
	Log     *slog.Logger
	Ruleset func() ruleset.Ruleset

	logged atomic.Uint64
}

// policies returns the selection chain a log prefix names (iptables cuts
// prefixes to 63 bytes: then the first chain it starts) and the policies
// that chain tries.
func (d *DeniedLogger) policies(prefix string) (string, []string) {
	r := d.Ruleset()
	i := sort.Search(len(r.Chains), func(i int) bool { return r.Chains[i].Name >= prefix })
	if i == len(r.Chains) || !strings.HasPrefix(r.Chains[i].Name, prefix) {
		return prefix, nil
	}
	c := r.Chains[i]
	var out []string
	for _, rule := range c.Rules {
		if rule.Owner.Kind == ruleset.OwnerPolicy {
			out = append(out, rule.Owner.PolicyKey())
		}
	}
	return c.Name, out
}

// clusterRule returns the owner of the counter a log prefix names: a
// ClusterNetworkPolicy Deny rule logs with its counter's name (iptables
// cuts prefixes: then the first counter it starts).
func (d *DeniedLogger) clusterRule(prefix string) (ruleset.Owner, bool) {
	cs := d.Ruleset().Counters
	i := sort.Search(len(cs), func(i int) bool { return cs[i].Name >= prefix })
	if i == len(cs) || !strings.HasPrefix(cs[i].Name, prefix) {
		return ruleset.Owner{}, false
	}
	o := cs[i].Owner()
	return o, o.Kind == ruleset.OwnerPolicyRule && o.Tier != ruleset.TierNetworkPolicy
}

// logClusterDenial logs a packet a ClusterNetworkPolicy rule denied.
func (d *DeniedLogger) logClusterDenial(o ruleset.Owner, payload []byte) {
	p, err := parsePacket(payload)
	if err != nil {
		d.Log.Debug("denied packet not understood", "rule", o.String(), "err", err)
		return
	}
	d.logged.Add(1)
	d.Log.Info("denied packet", "direction", string(o.Direction), "src", p.src, "dst", p.dst,
		"proto", p.proto, "dport", p.dport, "tier", string(o.Tier), "clusterNetworkPolicy", o.Policy,
		"rule", o.Rule, "ruleName", o.RuleName)
}

// Logged is the number of denied packets logged so far.
func (d *DeniedLogger) Logged() uint64 { return d.logged.Load() }

// Run reads the NFLOG group until ctx ends. It fails if the group cannot
// be bound (another process owns it).
func (d *DeniedLogger) Run(ctx context.Context) error {
	nf, err := nflog.Open(&nflog.Config{Group: d.Group, Copymode: nflog.CopyPacket, Bufsize: 128})
	if err != nil {
		return fmt.Errorf("open nflog group %d: %w", d.Group, err)
	}
	defer nf.Close()
	errc := make(chan error, 1)
	err = nf.RegisterWithErrorFunc(ctx, func(a nflog.Attribute) int {
		d.handle(a)
		return 0
	}, func(err error) int {
		if ctx.Err() == nil {
			select {
			case errc <- err:
			default:
			}
		}
		return 1
	})
	if err != nil {
		return fmt.Errorf("register on nflog group %d: %w", d.Group, err)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return fmt.Errorf("read nflog group %d: %w", d.Group, err)
	}
}

// handle logs one packet of the group. Packets of other prefixes (another
// user of the group) are ignored.
func (d *DeniedLogger) handle(a nflog.Attribute) {
	if a.Prefix == nil || !strings.HasPrefix(*a.Prefix, policy.DeniedPrefix) || a.Payload == nil {
		return
	}
	name := strings.TrimPrefix(*a.Prefix, policy.DeniedPrefix)
	if o, ok := d.clusterRule(name); ok {
		d.logClusterDenial(o, *a.Payload)
		return
	}
	chain, policies := d.policies(name)
	p, err := parsePacket(*a.Payload)
	if err != nil {
		d.Log.Debug("denied packet not understood", "selection", chain, "err", err)
		return
	}
	direction := "ingress"
	if strings.HasPrefix(chain, "sel-eg-") {
		direction = "egress"
	}
	d.logged.Add(1)
	d.Log.Info("denied packet", "direction", direction, "src", p.src, "dst", p.dst,
		"proto", p.proto, "dport", p.dport, "selection", chain, "policies", policies)
}

// packetInfo is what a denied-packet line says of the packet.
type packetInfo struct {
	src, dst netip.Addr
	proto    string
	dport    uint16
}

var errShortPacket = errors.New("short packet")

// parsePacket reads the addresses, protocol and destination port of an
// IPv4 or IPv6 packet (no IPv6 extension headers: the port is then 0).
func parsePacket(b []byte) (packetInfo, error) {
	var p packetInfo
	if len(b) < 1 {
		return p, errShortPacket
	}
	var proto byte
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0x0f) * 4
		if len(b) < 20 || ihl < 20 || len(b) < ihl {
			return p, errShortPacket
		}
		p.src = netip.AddrFrom4([4]byte(b[12:16]))
		p.dst = netip.AddrFrom4([4]byte(b[16:20]))
		proto, l4 = b[9], b[ihl:]
	case 6:
		if len(b) < 40 {
			return p, errShortPacket
		}
		p.src = netip.AddrFrom16([16]byte(b[8:24]))
		p.dst = netip.AddrFrom16([16]byte(b[24:40]))
		proto, l4 = b[6], b[40:]
	default:
		return p, fmt.Errorf("IP version %d", b[0]>>4)
	}
	p.proto = ruleset.ProtoName(proto)
	if _, ports := ruleset.ProtoNumber(p.proto); !ports {
		return p, nil
	}
	if len(l4) >= 4 {
		p.dport = binary.BigEndian.Uint16(l4[2:4])
	}
	return p, nil
}
