package nft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/ruleset"
	"golang.org/x/sys/unix"
)

// This file touches the kernel: it writes rulesets through netlink, one
// batch (one transaction) per Apply, encoded by github.com/google/nftables
// (rules and set elements by encode.go) and sent by sendBatch (batch.go).

var _ dataplane.Applier = (*NetlinkApplier)(nil)

// NetlinkApplier owns the table `inet weir` of one network namespace. It
// remembers the last ruleset it applied and sends only the difference.
// Apply, ApplyFull and ApplyChanges must not run concurrently (the agent's
// single worker calls them); the queries (Counters, Probe, RemoveTable) may
// run beside them and each other.
type NetlinkApplier struct {
	enc   *nftables.Conn    // encodes the batch: never touches a socket (newEncoder)
	send  batchConn         // sends the batch
	batch []netlink.Message // what enc's last Flush produced
	// msgs holds the batch being built, in order: what enc encoded
	// (takeEncoded) and the rules and elements the applier encodes itself
	// (ruleMessage, elemsMessage), into arena.
	msgs    []netlink.Message
	arena   attrWriter
	exprs   exprBuf // the rule being encoded
	elemBuf elemBuf // the kernel elements of the set being encoded
	// typeofs holds the typeof user data (typeofUserdata) of the sets
	// keyed by a rule id that the batch being built adds, by name:
	// flush writes it into their NEWSET messages (patchTypeof).
	typeofs map[string][]byte
	last    *ruleset.Ruleset
	// gate orders learns (Learner, read-locked) and full applies
	// (write-locked from the read of the learned elements to the commit),
	// so that no learn lands in a table a full apply then replaces.
	gate sync.RWMutex
	// learned reads the elements the kernel holds of a ruleset's Dynamic
	// sets (readLearned; the tests' recorders give their own).
	learned func(ctx context.Context, dynamic []ruleset.Set) (map[string][]nftables.SetElement, error)

	fd int // netns file descriptor, -1 for the current namespace
	// qmu serializes the queries and guards conn and qsock: conn is nil
	// before it is opened and after a query was cut short.
	qmu   sync.Mutex
	conn  *nftables.Conn
	qsock *netlink.Conn // conn's socket (openQuery)
}

// NewNetlinkApplier opens netlink connections into the network namespace at
// netnsPath (e.g. /var/run/netns/NAME or /proc/PID/ns/net); "" means the
// caller's current namespace.
func NewNetlinkApplier(netnsPath string) (*NetlinkApplier, error) {
	fd := -1
	if netnsPath != "" {
		var err error
		if fd, err = unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return nil, fmt.Errorf("open netns %s: %w", netnsPath, err)
		}
	}
	send, err := dialBatchConn(fd)
	if err != nil {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		return nil, err
	}
	a, err := newApplier(fd, send)
	if err != nil {
		return nil, err
	}
	if err := a.openQuery(); err != nil {
		return nil, errors.Join(err, a.Close())
	}
	return a, nil
}

// newApplier returns an applier that sends its batches on send, for the
// namespace of fd (which it owns from then on).
func newApplier(fd int, send batchConn) (*NetlinkApplier, error) {
	a := &NetlinkApplier{fd: fd, send: send}
	a.learned = a.readLearned
	var err error
	if a.enc, err = newEncoder(func(b []netlink.Message) { a.batch = b }); err != nil {
		return nil, errors.Join(fmt.Errorf("nftables encoder: %w", err), a.Close())
	}
	return a, nil
}

// openQuery opens the query connection; the caller holds qmu or owns a.
func (a *NetlinkApplier) openQuery() error {
	opts := []nftables.ConnOption{nftables.WithSockOptions(bigBuffers)}
	if a.fd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(a.fd))
	}
	conn, sock, err := openQuery(opts...)
	if err != nil {
		return fmt.Errorf("open nftables netlink: %w", err)
	}
	a.conn, a.qsock = conn, sock
	return nil
}

// closeQuery closes the query connection; the caller holds qmu or owns a.
func (a *NetlinkApplier) closeQuery() error {
	if a.conn == nil {
		return nil
	}
	err := a.conn.CloseLasting()
	a.conn, a.qsock = nil, nil
	return err
}

// query runs fn on the query connection, within ctx. A query that ctx cut
// short leaves its answer on the socket, where the next query would read
// it as its own: the connection is closed then, and the next query opens
// another.
func (a *NetlinkApplier) query(ctx context.Context, fn func(*nftables.Conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.qmu.Lock()
	defer a.qmu.Unlock()
	if a.conn == nil {
		if err := a.openQuery(); err != nil {
			return err
		}
	}
	release, err := bound(ctx, a.qsock)
	if err != nil {
		return err
	}
	err = fn(a.conn)
	release()
	if err != nil && ctx.Err() != nil {
		return errors.Join(withContext(ctx, err), a.closeQuery())
	}
	return err
}

// takeEncoded moves the messages queued on enc to the batch being built;
// a.batch is only where enc's Flush leaves them.
func (a *NetlinkApplier) takeEncoded() error {
	err := a.enc.Flush()
	if n := len(a.batch); err == nil && n >= 2 {
		a.msgs = append(a.msgs, a.batch[1:n-1]...) // without enc's begin and end
	}
	a.batch = nil
	if err != nil {
		return fmt.Errorf("encode batch: %w", err)
	}
	return nil
}

// flush sends the batch built (and the messages still queued on enc) as
// one transaction, within ctx.
func (a *NetlinkApplier) flush(ctx context.Context) error {
	if err := a.takeEncoded(); err != nil {
		a.discard()
		return err
	}
	b, typeofs := wrapBatch(a.msgs), a.typeofs
	a.msgs, a.typeofs, a.arena, a.elemBuf = nil, nil, attrWriter{}, elemBuf{}
	if err := patchTypeof(b, typeofs); err != nil {
		return err
	}
	return sendBatch(ctx, a.send, b)
}

// wrapBatch puts msgs between a batch begin and a batch end message, as
// google/nftables' Flush does, and clears their sequence numbers: the
// socket numbers the batch's messages in order (exchange finds the
// acknowledged one by its place), and enc numbered each of its Flushes
// on its own.
func wrapBatch(msgs []netlink.Message) []netlink.Message {
	for i := range msgs {
		msgs[i].Header.Sequence = 0
	}
	mark := func(t uint16) netlink.Message {
		return netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(t), Flags: netlink.Request},
			Data:   []byte{0, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
		}
	}
	b := make([]netlink.Message, 0, len(msgs)+2)
	b = append(b, mark(unix.NFNL_MSG_BATCH_BEGIN))
	b = append(b, msgs...)
	return append(b, mark(unix.NFNL_MSG_BATCH_END))
}

// discard drops the batch being built and the messages queued on enc, so
// that a batch abandoned half-built never reaches the kernel with the next
// one.
func (a *NetlinkApplier) discard() {
	_ = a.enc.Flush()
	a.batch, a.msgs, a.typeofs, a.arena, a.elemBuf = nil, nil, nil, attrWriter{}, elemBuf{}
}

// Close releases the connections; the kernel keeps the ruleset.
func (a *NetlinkApplier) Close() error {
	a.qmu.Lock()
	err := a.closeQuery()
	a.qmu.Unlock()
	if a.send != nil {
		err = errors.Join(err, a.send.Close())
	}
	if a.fd >= 0 {
		_ = unix.Close(a.fd)
		a.fd = -1
	}
	return err
}

// Apply makes the kernel hold r. The first call replaces the whole table in
// one transaction; later calls send Diff(last, r) in one transaction, and
// fall back to a full replacement if that is rejected (the rejected
// transaction changed nothing). ctx bounds the wait for each transaction's
// answer. nftables expresses every ruleset: it reports no problems.
func (a *NetlinkApplier) Apply(ctx context.Context, r ruleset.Ruleset) ([]dataplane.Problem, error) {
	return nil, a.apply(ctx, r)
}

func (a *NetlinkApplier) apply(ctx context.Context, r ruleset.Ruleset) error {
	if a.last == nil {
		return a.ApplyFull(ctx, r)
	}
	ch := ruleset.Diff(*a.last, r)
	if ch.Full {
		return a.ApplyFull(ctx, r)
	}
	if ch.Empty() {
		return nil
	}
	if err := a.ApplyChanges(ctx, r, ch); err != nil {
		if ferr := a.ApplyFull(ctx, r); ferr != nil {
			return errors.Join(err, ferr)
		}
	}
	return nil
}

// ApplyFull replaces the table's content with r in one transaction: the
// batch adds the table (so the delete cannot fail), deletes it and builds
// it again. The kernel switches from the old ruleset to the new one at
// commit; no packet ever sees an empty table. The elements the kernel
// holds of r's Dynamic sets (a set of the same name and key type) are
// read first and added again in the same transaction, each with the time
// it had left as its timeout: learned addresses survive a full apply and
// a restart of the agent. ctx bounds the wait for the kernel's answers.
func (a *NetlinkApplier) ApplyFull(ctx context.Context, r ruleset.Ruleset) error {
	a.last = nil
	a.gate.Lock()
	defer a.gate.Unlock()
	var dynamic []ruleset.Set
	for _, s := range r.Sets {
		if s.Dynamic {
			dynamic = append(dynamic, s)
		}
	}
	var learned map[string][]nftables.SetElement
	if len(dynamic) > 0 {
		var err error
		if learned, err = a.learned(ctx, dynamic); err != nil {
			return fmt.Errorf("apply table inet %s: %w", ruleset.TableName, err)
		}
	}
	a.msgs = make([]netlink.Message, 0, fullBatchLen(r))
	a.enc.AddTable(weirTable)
	a.enc.DelTable(weirTable)
	a.enc.AddTable(weirTable)
	for _, c := range r.Counters { // rules count into them
		if err := a.addCounter(c.Name); err != nil {
			a.discard()
			return err
		}
	}
	// Chains first: map elements jump to them. Then sets: rules look them up.
	chains := make([]*nftables.Chain, len(r.Chains))
	for i, c := range r.Chains {
		kc, err := a.addChain(c)
		if err != nil {
			a.discard()
			return err
		}
		chains[i] = kc
	}
	// The rules are encoded beside the sets, on a goroutine of their own,
	// then by this one too once the sets are done (see ruleJobs).
	jobs := newRuleJobs(r, chains)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var (
			b exprBuf
			w attrWriter
		)
		jobs.run(a, &b, &w)
	}()
	for _, s := range byLookups(r) {
		err := a.addSet(s)
		if els := learned[s.Name]; err == nil && len(els) > 0 {
			err = a.sendElems(kernelSet(s), els, unix.NFT_MSG_NEWSETELEM)
		}
		if err != nil {
			jobs.stop()
			<-done
			a.discard()
			return err
		}
	}
	err := a.takeEncoded()
	if err != nil {
		jobs.stop()
	}
	jobs.run(a, &a.exprs, &a.arena)
	<-done
	if err == nil {
		err = jobs.err()
	}
	if err != nil {
		a.discard()
		return fmt.Errorf("apply table inet %s: %w", ruleset.TableName, err)
	}
	for _, part := range jobs.parts {
		a.msgs = append(a.msgs, part...)
	}
	if err := a.flush(ctx); err != nil {
		return fmt.Errorf("apply table inet %s: %w", ruleset.TableName, err)
	}
	a.last = &r
	return nil
}

// byLookups returns r's sets, those its rules look up most first (in name
// order among equals). The kernel finds the set of a rule's lookup by
// walking the table's sets in the order they were added, comparing names:
// a dense table's six thousand lookups, nearly all of the shared sets,
// walked past the dozens of sets whose names sort before them.
func byLookups(r ruleset.Ruleset) []ruleset.Set {
	n := make(map[string]int, len(r.Sets))
	for _, c := range r.Chains {
		for _, rule := range c.Rules {
			for _, m := range rule.Matches {
				if m.Kind == ruleset.MatchLookup {
					n[m.Set]++
				}
			}
			if rule.Verdict.Kind == ruleset.VerdictVMap {
				n[rule.Verdict.Map]++
			}
		}
	}
	sets := slices.Clone(r.Sets)
	slices.SortStableFunc(sets, func(a, b ruleset.Set) int { return n[b.Name] - n[a.Name] })
	return sets
}

// fullBatchLen is about the number of messages of the full apply of r:
// its table, counters, chains, rules and sets, each set in a message or
// two.
func fullBatchLen(r ruleset.Ruleset) int {
	n := 3 + len(r.Counters) + len(r.Chains) + 2*len(r.Sets)
	for _, c := range r.Chains {
		n += len(c.Rules)
	}
	return n
}

// ApplyChanges sends ch (computed against the last applied ruleset) in one
// transaction; r is the resulting ruleset. ctx bounds the wait for the
// kernel's answer.
func (a *NetlinkApplier) ApplyChanges(ctx context.Context, r ruleset.Ruleset, ch ruleset.Changes) error {
	for _, name := range ch.AddCounters {
		if err := a.addCounter(name); err != nil {
			a.discard()
			return err
		}
	}
	chains := map[string]*nftables.Chain{}
	for _, c := range ch.AddChains {
		kc, err := a.addChain(c)
		if err != nil {
			a.discard()
			return err
		}
		chains[c.Name] = kc
	}
	for _, s := range ch.AddSets {
		if err := a.addSet(s); err != nil {
			a.discard()
			return err
		}
	}
	for _, e := range ch.DelElems {
		if err := a.elems(r, e, unix.NFT_MSG_DELSETELEM); err != nil {
			a.discard()
			return err
		}
	}
	for _, e := range ch.AddElems {
		if err := a.elems(r, e, unix.NFT_MSG_NEWSETELEM); err != nil {
			a.discard()
			return err
		}
	}
	for _, c := range ch.ReplaceChains {
		kc := kernelChain(c)
		a.enc.FlushChain(kc)
		if err := a.addRules(r, kc, c.Rules); err != nil {
			a.discard()
			return err
		}
	}
	for _, c := range ch.AddChains {
		if err := a.addRules(r, chains[c.Name], c.Rules); err != nil {
			a.discard()
			return err
		}
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
	if err := a.flush(ctx); err != nil {
		a.last = nil // unknown: the next Apply is a full one
		return fmt.Errorf("apply changes to table inet %s (%s): %w", ruleset.TableName, ch, err)
	}
	a.last = &r
	return nil
}

// addCounter adds the named counter name (at zero) to the batch, after
// what enc holds.
func (a *NetlinkApplier) addCounter(name string) error {
	if err := a.takeEncoded(); err != nil {
		return err
	}
	a.msgs = append(a.msgs, counterMessage(&a.arena, name))
	return nil
}

// addChain adds chain c (without its rules) to the batch: a base chain
// through enc, a regular one, after what enc holds, encoded here.
func (a *NetlinkApplier) addChain(c ruleset.Chain) (*nftables.Chain, error) {
	kc := kernelChain(c)
	if c.Base != nil {
		return a.enc.AddChain(kc), nil
	}
	if err := a.takeEncoded(); err != nil {
		return nil, err
	}
	a.msgs = append(a.msgs, chainMessage(&a.arena, c.Name))
	return kc, nil
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
	return a.sendElems(ks, a.elemBuf.kernelElems(s, s.Elems), unix.NFT_MSG_NEWSETELEM)
}

// elems adds or deletes elements of a set that r defines; none of a
// Dynamic set, whose elements are the Learner's.
func (a *NetlinkApplier) elems(r ruleset.Ruleset, e ruleset.SetElems, typ uint16) error {
	s, ok := r.Set(e.Set)
	if !ok {
		return fmt.Errorf("set %s: not in ruleset", e.Set)
	}
	if s.Dynamic {
		return nil
	}
	return a.sendElems(kernelSet(s), a.elemBuf.kernelElems(s, e.Elems), typ)
}

// sendElems adds to the batch, after what enc holds, messages of type typ
// (NFT_MSG_NEWSETELEM or NFT_MSG_DELSETELEM) holding els, at most
// maxElemsPerMessage each (chunkElems).
func (a *NetlinkApplier) sendElems(ks *nftables.Set, els []nftables.SetElement, typ uint16) error {
	if err := a.takeEncoded(); err != nil {
		return err
	}
	for _, chunk := range chunkElems(els) {
		m, err := elemsMessage(&a.arena, ks, chunk, typ)
		if err != nil {
			return fmt.Errorf("set %s elements: %w", ks.Name, err)
		}
		a.msgs = append(a.msgs, m)
	}
	return nil
}

// addRules adds rules to the batch, after what enc holds.
func (a *NetlinkApplier) addRules(r ruleset.Ruleset, kc *nftables.Chain, rules []ruleset.Rule) error {
	if err := a.takeEncoded(); err != nil {
		return err
	}
	var err error
	a.msgs, err = a.appendRules(a.msgs, &a.arena, &a.exprs, r, kc, rules)
	return err
}

// appendRules appends the messages of rules, of chain kc of r, encoded
// with b into w, to msgs.
func (a *NetlinkApplier) appendRules(msgs []netlink.Message, w *attrWriter, b *exprBuf, r ruleset.Ruleset, kc *nftables.Chain, rules []ruleset.Rule) ([]netlink.Message, error) {
	interval := func(name string) bool {
		s, _ := r.Set(name)
		return s.Interval
	}
	for _, rule := range rules {
		m, err := ruleMessage(w, b.rule(kc, rule, interval))
		if err != nil {
			return msgs, fmt.Errorf("chain %s: %w", kc.Name, err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// ruleJobs encodes the rules of a full apply on several goroutines at
// once: the chains are taken in runs of ruleJobChains, each run's messages
// kept apart and put together in order afterwards. The rules are the most
// of a dense table's batch; one goroutine encoding them all beside the sets
// left the other idle once the sets were done.
type ruleJobs struct {
	r      ruleset.Ruleset
	chains []*nftables.Chain // r.Chains' kernel chains
	next   atomic.Int64      // the next run to take
	parts  [][]netlink.Message
	errs   []error
}

// ruleJobChains is the number of chains a goroutine takes at a time.
const ruleJobChains = 64

func newRuleJobs(r ruleset.Ruleset, chains []*nftables.Chain) *ruleJobs {
	n := (len(r.Chains) + ruleJobChains - 1) / ruleJobChains
	return &ruleJobs{r: r, chains: chains, parts: make([][]netlink.Message, n), errs: make([]error, n)}
}

// run encodes runs of chains until none is left, with b and into w; it
// reads only r, the chains and a's methods, never a's buffers.
func (j *ruleJobs) run(a *NetlinkApplier, b *exprBuf, w *attrWriter) {
	for {
		i := int(j.next.Add(1) - 1)
		if i >= len(j.parts) {
			return
		}
		for c := i * ruleJobChains; c < min((i+1)*ruleJobChains, len(j.r.Chains)); c++ {
			var err error
			if j.parts[i], err = a.appendRules(j.parts[i], w, b, j.r, j.chains[c], j.r.Chains[c].Rules); err != nil {
				j.errs[i] = err
				j.stop()
				return
			}
		}
	}
}

// stop leaves the runs not taken yet.
func (j *ruleJobs) stop() { j.next.Store(int64(len(j.parts))) }

// err is the first error of a run, nil when none; valid once every run
// has returned.
func (j *ruleJobs) err() error {
	for _, err := range j.errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Counters reads the table's named counters (see Ruleset.Counters), within
// ctx.
func (a *NetlinkApplier) Counters(ctx context.Context) (map[string]ruleset.CounterValue, error) {
	var objs []nftables.Obj
	err := a.query(ctx, func(c *nftables.Conn) (err error) {
		objs, err = c.GetObjects(weirTable)
		return err
	})
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
