package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/weir-cni/weir/ruleset"
	"golang.org/x/sys/unix"
)

// This file touches the kernel: it adds and removes the elements of the
// Dynamic sets the DNS proxy fills (see ruleset.DNSRule), each change one
// transaction on a netlink socket of its own.

// ErrSetFull is wrapped by Learn's error when the set holds as many
// elements as its size allows (the kernel answers ENFILE; ENOSPC is taken
// for the same): the address stays denied.
var ErrSetFull = errors.New("set is full")

// learnTimeout bounds the wait for the kernel's answer to one change.
const learnTimeout = 5 * time.Second

// Learner adds and removes `pod . address` elements of the Dynamic sets of
// the table inet weir of an applier's namespace. It is safe for
// concurrent use; its changes wait while the applier replaces the whole
// table, so none is lost to the replacement (see ApplyFull).
type Learner struct {
	gate *sync.RWMutex // the applier's

	mu    sync.Mutex // serializes the batches below
	enc   *nftables.Conn
	send  batchConn
	batch []netlink.Message
}

// NewLearner opens a Learner on a netlink socket of its own, in a's
// namespace. Close it when done; it outlives neither the namespace nor
// the sets it changes, and needs a open only while it is created.
func (a *NetlinkApplier) NewLearner() (*Learner, error) {
	send, err := dialBatchConn(a.fd)
	if err != nil {
		return nil, err
	}
	l := &Learner{gate: &a.gate, send: send}
	if l.enc, err = newEncoder(func(b []netlink.Message) { l.batch = b }); err != nil {
		return nil, errors.Join(fmt.Errorf("nftables encoder: %w", err), send.Close())
	}
	return l, nil
}

// Close releases the Learner's socket; the kernel keeps the elements.
func (l *Learner) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.send.Close()
}

// Learn adds `pod . addr` to set (both addresses of one family, the set's)
// with timeout ttl, or gives it ttl if it is there already. The error
// wraps ErrSetFull when the set is full.
//
// The batch adds the element, deletes it and adds it again: a kernel
// without element timeout updates (older than 2024's) leaves the timeout
// of an element that is there as it was, and the delete cannot fail once
// the element is there.
func (l *Learner) Learn(set string, pod, addr netip.Addr, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("learn %s . %s in set %s: timeout %v under the kernel's millisecond", pod, addr, set, ttl)
	}
	ks, el, err := learnedElem(set, pod, addr)
	if err != nil {
		return err
	}
	timed := el
	timed.Timeout = ttl
	err = l.exchange(func() error {
		return errors.Join(l.enc.SetAddElements(ks, []nftables.SetElement{timed}),
			l.enc.SetDeleteElements(ks, []nftables.SetElement{el}),
			l.enc.SetAddElements(ks, []nftables.SetElement{timed}))
	})
	switch {
	case errors.Is(err, unix.ENFILE), errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("learn %s . %s in set %s: %w: %w", pod, addr, set, ErrSetFull, err)
	case err != nil:
		return fmt.Errorf("learn %s . %s in set %s: %w", pod, addr, set, err)
	}
	return nil
}

// Forget deletes the elements `pod . addr` of set, for each of addrs; an
// element or a set that is not there is no error.
func (l *Learner) Forget(set string, pod netip.Addr, addrs []netip.Addr) error {
	els := make([]nftables.SetElement, 0, len(addrs))
	var ks *nftables.Set
	for _, addr := range addrs {
		s, el, err := learnedElem(set, pod, addr)
		if err != nil {
			return err
		}
		ks, els = s, append(els, el)
	}
	if len(els) == 0 {
		return nil
	}
	del := func(els []nftables.SetElement) error {
		return l.exchange(func() error { return l.enc.SetDeleteElements(ks, els) })
	}
	if err := del(els); !errors.Is(err, unix.ENOENT) {
		return wrapForget(set, pod, err)
	}
	var errs []error // some are not there: one at a time
	for _, el := range els {
		if err := del([]nftables.SetElement{el}); !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	return wrapForget(set, pod, errors.Join(errs...))
}

func wrapForget(set string, pod netip.Addr, err error) error {
	if err != nil {
		return fmt.Errorf("forget addresses of %s in set %s: %w", pod, set, err)
	}
	return nil
}

// learnedElem is the kernel set (by name) and element of `pod . addr`.
func learnedElem(set string, pod, addr netip.Addr) (*nftables.Set, nftables.SetElement, error) {
	pod, addr = pod.Unmap(), addr.Unmap()
	if !pod.IsValid() || !addr.IsValid() || pod.Is4() != addr.Is4() {
		return nil, nftables.SetElement{}, fmt.Errorf("set %s: %s . %s is not a pair of addresses of one family", set, pod, addr)
	}
	typ := ruleset.TypeIPv4
	if pod.Is6() {
		typ = ruleset.TypeIPv6
	}
	s := ruleset.Set{Name: set, Key: []ruleset.Type{typ, typ}, Timeout: true}
	p, a := string(pod.AsSlice()), string(addr.AsSlice())
	e := ruleset.Elem{Key: []ruleset.Range{{From: p, To: p}, {From: a, To: a}}}
	return kernelSet(s), kernelElems(s, []ruleset.Elem{e})[0], nil
}

// exchange queues the messages queue adds as one transaction, sends it
// and waits for the kernel's answer, after any full apply of the table.
func (l *Learner) exchange(queue func() error) error {
	l.gate.RLock()
	defer l.gate.RUnlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batch = nil
	err := queue()
	if ferr := l.enc.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("encode batch: %w", ferr)
	}
	b := l.batch
	l.batch = nil
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), learnTimeout)
	defer cancel()
	return sendBatch(ctx, l.send, b)
}
