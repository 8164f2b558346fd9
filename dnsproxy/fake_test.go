package dnsproxy

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// call is one Learn (ttl set) or Forget (addrs set) of a fakeLearner.
type call struct {
	set       string
	pod, addr netip.Addr
	ttl       time.Duration
	addrs     []netip.Addr
}

// fakeLearner records its calls. Sets in full refuse every Learn with
// ErrSetFull; forgetErr fails every Forget. With entered and release set,
// Learn reports itself on entered and returns only once release is closed.
type fakeLearner struct {
	mu        sync.Mutex
	calls     []call
	full      map[string]bool
	forgetErr error
	entered   chan call
	release   chan struct{}
}

func (f *fakeLearner) Learn(set string, pod, addr netip.Addr, ttl time.Duration) error {
	c := call{set: set, pod: pod, addr: addr, ttl: ttl}
	if f.entered != nil {
		f.entered <- c
		<-f.release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full[set] {
		return ErrSetFull
	}
	f.calls = append(f.calls, c)
	return nil
}

func (f *fakeLearner) Forget(set string, pod netip.Addr, addrs []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.forgetErr != nil {
		return f.forgetErr
	}
	f.calls = append(f.calls, call{set: set, pod: pod, addrs: slices.Clone(addrs)})
	return nil
}

// take returns the calls so far, by set, pod and address, and forgets them.
func (f *fakeLearner) take() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	slices.SortFunc(out, func(a, b call) int {
		if a.set != b.set {
			if a.set < b.set {
				return -1
			}
			return 1
		}
		if c := a.pod.Compare(b.pod); c != 0 {
			return c
		}
		return a.addr.Compare(b.addr)
	})
	return out
}

func callsEqual(a, b []call) bool {
	return slices.EqualFunc(a, b, func(x, y call) bool {
		return x.set == y.set && x.pod == y.pod && x.addr == y.addr && x.ttl == y.ttl && slices.Equal(x.addrs, y.addrs)
	})
}
