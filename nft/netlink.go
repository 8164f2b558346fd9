package nft

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/weir-cni/weir/ruleset"
	"golang.org/x/sys/unix"
)

// This file touches the kernel: it writes rulesets through netlink, one
// batch (one transaction) per Apply, encoded by github.com/google/nftables
// and sent by sendBatch (batch.go).

// maxElemsPerMessage bounds the elements of one set-elements message:
// google/nftables v0.3.0 silently leaves a set partial above ≈ 2.5k.
const maxElemsPerMessage = 1024

// NetlinkApplier owns the table `inet weir` of one network namespace. It
// remembers the last ruleset it applied and sends only the difference. It
// is not safe for concurrent use: the agent's single worker owns it.
type NetlinkApplier struct {
	conn  *nftables.Conn    // queries (Probe)
	enc   *nftables.Conn    // encodes the batch: never touches a socket
	nl    *netlink.Conn     // sends the batch
	batch []netlink.Message // what enc's last Flush produced
	fd    int               // netns file descriptor, -1 for the current namespace
	// typeofs holds the typeof user data (typeofUserdata) of the sets
	// keyed by a rule id that the batch being built adds, by name:
	// flush writes it into their NEWSET messages (patchTypeof).
	typeofs map[string][]byte
	last    *ruleset.Ruleset
}

// NewNetlinkApplier opens a netlink connection into the network namespace at
// netnsPath (e.g. /var/run/netns/NAME or /proc/PID/ns/net); "" means the
// caller's current namespace.
func NewNetlinkApplier(netnsPath string) (*NetlinkApplier, error) {
	a := &NetlinkApplier{fd: -1}
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigBuffers)}
	if netnsPath != "" {
		fd, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open netns %s: %w", netnsPath, err)
		}
		a.fd = fd
		opts = append(opts, nftables.WithNetNSFd(fd))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		a.closeFd()
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	a.conn = conn
	if a.enc, err = newEncoder(func(b []netlink.Message) { a.batch = b }); err != nil {
		return nil, errors.Join(fmt.Errorf("nftables encoder: %w", err), a.Close())
	}
	cfg := &netlink.Config{}
	if a.fd >= 0 {
		cfg.NetNS = a.fd
	}
	if a.nl, err = netlink.Dial(unix.NETLINK_NETFILTER, cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("open nftables netlink: %w", err), a.Close())
	}
	if err := bigBuffers(a.nl); err != nil {
		return nil, errors.Join(err, a.Close())
	}
	return a, nil
}

// flush sends the messages queued on enc as one transaction.
func (a *NetlinkApplier) flush() error {
	a.batch = nil
	if err := a.enc.Flush(); err != nil {
		return fmt.Errorf("encode batch: %w", err)
	}
	b, typeofs := a.batch, a.typeofs
	a.batch, a.typeofs = nil, nil
	if err := patchTypeof(b, typeofs); err != nil {
		return err
	}
	return sendBatch(a.nl, b)
}

// discard drops the messages queued on enc, so that a batch abandoned
// half-built never reaches the kernel with the next one.
func (a *NetlinkApplier) discard() {
	_ = a.enc.Flush()
	a.batch, a.typeofs = nil, nil
}

// socketBuffer is the netlink socket buffer size, both ways. A full sync of
// a large cluster is one batch of several megabytes, sent in one sendmsg,
// and the kernel refuses a message larger than the send buffer (EMSGSIZE);
// the acks of every message of the batch must fit the receive buffer. Like
// nft, weir forces the size (root may exceed net.core.[rw]mem_max).
const socketBuffer = 64 << 20

func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], socketBuffer); e != nil {
				if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], socketBuffer); e != nil {
					serr = fmt.Errorf("set netlink socket buffer: %w", e)
				}
			}
		}
	})
	if err != nil {
		return fmt.Errorf("netlink socket control: %w", err)
	}
	return serr
}

// Close releases the connection; the kernel keeps the ruleset.
func (a *NetlinkApplier) Close() error {
	err := a.conn.CloseLasting()
	if a.nl != nil {
		err = errors.Join(err, a.nl.Close())
	}
	a.closeFd()
	return err
}

func (a *NetlinkApplier) closeFd() {
	if a.fd >= 0 {
		_ = unix.Close(a.fd)
		a.fd = -1
	}
}

// Apply makes the kernel hold r. The first call replaces the whole table in
// one transaction; later calls send Diff(last, r) in one transaction, and
// fall back to a full replacement if that is rejected (the rejected
// transaction changed nothing).
func (a *NetlinkApplier) Apply(r ruleset.Ruleset) error {
	if a.last == nil {
		return a.ApplyFull(r)
	}
	ch := ruleset.Diff(*a.last, r)
	if ch.Full {
		return a.ApplyFull(r)
	}
	if ch.Empty() {
		return nil
	}
	if err := a.ApplyChanges(r, ch); err != nil {
		if ferr := a.ApplyFull(r); ferr != nil {
			return errors.Join(err, ferr)
		}
	}
	return nil
}

// ApplyFull replaces the table's content with r in one transaction: the
// batch adds the table (so the delete cannot fail), deletes it and builds
// it again. The kernel switches from the old ruleset to the new one at
// commit; no packet ever sees an empty table.
func (a *NetlinkApplier) ApplyFull(r ruleset.Ruleset) error {
	a.last = nil
	a.enc.AddTable(weirTable)
	a.enc.DelTable(weirTable)
	a.enc.AddTable(weirTable)
	for _, c := range r.Counters { // rules count into them
		a.enc.AddObj(kernelCounter(c.Name))
	}
	// Chains first: map elements jump to them. Then sets: rules look them up.
	chains := make(map[string]*nftables.Chain, len(r.Chains))
	for _, c := range r.Chains {
		chains[c.Name] = a.enc.AddChain(kernelChain(c))
	}
	for _, s := range r.Sets {
		if err := a.addSet(s); err != nil {
			a.discard()
			return err
		}
	}
	for _, c := range r.Chains {
		a.addRules(r, chains[c.Name], c.Rules)
	}
	if err := a.flush(); err != nil {
		return fmt.Errorf("apply table inet %s: %w", ruleset.TableName, err)
	}
	a.last = &r
	return nil
}

// ApplyChanges sends ch (computed against the last applied ruleset) in one
// transaction; r is the resulting ruleset.
func (a *NetlinkApplier) ApplyChanges(r ruleset.Ruleset, ch ruleset.Changes) error {
	for _, name := range ch.AddCounters {
		a.enc.AddObj(kernelCounter(name))
	}
	chains := map[string]*nftables.Chain{}
	for _, c := range ch.AddChains {
		chains[c.Name] = a.enc.AddChain(kernelChain(c))
	}
	for _, s := range ch.AddSets {
		if err := a.addSet(s); err != nil {
			a.discard()
			return err
		}
	}
	for _, e := range ch.DelElems {
		if err := a.elems(r, e, a.enc.SetDeleteElements); err != nil {
			a.discard()
			return err
		}
	}
	for _, e := range ch.AddElems {
		if err := a.elems(r, e, a.enc.SetAddElements); err != nil {
			a.discard()
			return err
		}
	}
	for _, c := range ch.ReplaceChains {
		kc := kernelChain(c)
		a.enc.FlushChain(kc)
		a.addRules(r, kc, c.Rules)
	}
	for _, c := range ch.AddChains {
		a.addRules(r, chains[c.Name], c.Rules)
	}
	for _, name := range ch.DelChains {
		a.enc.FlushChain(&nftables.Chain{Table: weirTable, Name: name})
	}
	for _, name := range ch.DelChains {
		a.enc.DelChain(&nftables.Chain{Table: weirTable, Name: name})
	}
	for _, name := range ch.DelSets {
		a.enc.DelSet(&nftables.Set{Table: weirTable, Name: name})
	}
	for _, name := range ch.DelCounters {
		a.enc.DeleteObject(kernelCounter(name))
	}
	if err := a.flush(); err != nil {
		a.last = nil // unknown: the next Apply is a full one
		return fmt.Errorf("apply changes to table inet %s (%s): %w", ruleset.TableName, ch, err)
	}
	a.last = &r
	return nil
}

func (a *NetlinkApplier) addSet(s ruleset.Set) error {
	ks := kernelSet(s)
	if s.Key[0] == ruleset.TypeID {
		if a.typeofs == nil {
			a.typeofs = map[string][]byte{}
		}
		a.typeofs[s.Name] = typeofUserdata(s)
	}
	if err := a.enc.AddSet(ks, nil); err != nil {
		return fmt.Errorf("add set %s: %w", s.Name, err)
	}
	return a.sendElems(ks, kernelElems(s, s.Elems), a.enc.SetAddElements)
}

// elems adds or deletes elements of a set that r defines.
func (a *NetlinkApplier) elems(r ruleset.Ruleset, e ruleset.SetElems, op func(*nftables.Set, []nftables.SetElement) error) error {
	s, ok := r.Set(e.Set)
	if !ok {
		return fmt.Errorf("set %s: not in ruleset", e.Set)
	}
	return a.sendElems(kernelSet(s), kernelElems(s, e.Elems), op)
}

// sendElems sends elements in messages of at most maxElemsPerMessage,
// never splitting the start and end of one interval.
func (a *NetlinkApplier) sendElems(ks *nftables.Set, els []nftables.SetElement, op func(*nftables.Set, []nftables.SetElement) error) error {
	for len(els) > 0 {
		n := min(len(els), maxElemsPerMessage)
		if n < len(els) && els[n].IntervalEnd {
			n--
		}
		if err := op(ks, els[:n]); err != nil {
			return fmt.Errorf("set %s elements: %w", ks.Name, err)
		}
		els = els[n:]
	}
	return nil
}

func (a *NetlinkApplier) addRules(r ruleset.Ruleset, kc *nftables.Chain, rules []ruleset.Rule) {
	interval := func(name string) bool {
		s, _ := r.Set(name)
		return s.Interval
	}
	for _, rule := range rules {
		a.enc.AddRule(kernelRule(kc, rule, interval))
	}
}

// Counters reads the table's named counters (see Ruleset.Counters).
func (a *NetlinkApplier) Counters() (map[string]ruleset.CounterValue, error) {
	objs, err := a.conn.GetObjects(weirTable)
	if err != nil {
		return nil, fmt.Errorf("read counters of table inet %s: %w", ruleset.TableName, err)
	}
	out := make(map[string]ruleset.CounterValue, len(objs))
	for _, o := range objs {
		if c, ok := o.(*nftables.CounterObj); ok {
			out[c.Name] = ruleset.CounterValue{Packets: c.Packets, Bytes: c.Bytes}
		}
	}
	return out, nil
}
