// Package ipam hands out pod addresses from the configured ranges and keeps
// the reservations in a crash-safe store.
//
// The allocator (alloc.go) is pure: it takes the current reservations and
// returns a decision. It reaches state only through the small Store
// interface; the disk store (disk.go, scan.go) is the only code that
// touches the filesystem, and the memory store serves tests.
package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/weir-cni/weir/conf"
)

var (
	// ErrExhausted means every range of an address family is full.
	ErrExhausted = errors.New("no free address")
	// ErrUnavailable means a requested address is held by another attachment.
	ErrUnavailable = errors.New("requested address is in use")
)

// Attachment identifies what holds an address: one interface of one
// container.
type Attachment struct{ ContainerID, IfName string }

func (a Attachment) String() string { return a.ContainerID + "/" + a.IfName }

// Allocation is one address given to an attachment and the range it came
// from.
type Allocation struct {
	Addr  netip.Addr
	Range conf.Range
	// Fresh is set when this Allocate claimed the address; unset, the
	// attachment already held it, and undoing this ADD must leave it held.
	Fresh bool
}

// IPAM allocates addresses for one network.
type IPAM struct {
	store Store
}

// New returns an allocator over s. Most callers want Open.
func New(s Store) *IPAM { return &IPAM{store: s} }

// Open opens (creating, 0700) the store for one network at
// filepath.Join(dataDir, network).
func Open(dataDir, network string) (*IPAM, error) {
	s, err := OpenDisk(dataDir, network, DiskOptions{})
	if err != nil {
		return nil, err
	}
	return New(s), nil
}

// Close releases the store.
func (m *IPAM) Close() error { return m.store.Close() }

// Allocate gives a one address per address family present in ranges; the
// ranges of a family are tried in order. A requested address (at most one
// per family, already validated to lie inside a range) is given as is or
// not at all (ErrUnavailable). Allocate is idempotent: for a family in
// which the attachment already holds an address inside ranges, that address
// is returned and requested is ignored (an address it holds outside every
// range stays held until Release, and a new one is given). All-or-nothing:
// on error no address is newly reserved. Allocations come in the order
// their families first appear in ranges.
func (m *IPAM) Allocate(a Attachment, ranges []conf.Range, requested []netip.Addr) (allocs []Allocation, err error) {
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("allocate: %w", err)
	}
	if len(ranges) == 0 {
		return nil, errors.New("allocate: no ranges")
	}
	err = m.locked(func() error {
		held, err := m.store.Reservations()
		if err != nil {
			return err
		}
		last, err := m.store.LastReserved()
		if err != nil {
			return err
		}
		p, err := plan(a, ranges, requested, held, last)
		if err != nil {
			return err
		}
		if err := m.commit(a, p, last); err != nil {
			return err
		}
		allocs = p.allocs
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("allocate for %s: %w", a, err)
	}
	return allocs, nil
}

// commit claims the new addresses of p, undoing every claim if one fails.
func (m *IPAM) commit(a Attachment, p decision, last map[string]netip.Addr) (err error) {
	if len(p.fresh) == 0 {
		return nil
	}
	var claimed []netip.Addr
	defer func() {
		if err == nil {
			return
		}
		for _, ip := range claimed {
			if uerr := m.store.Unclaim(ip); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}
	}()
	for _, f := range p.fresh {
		if err := m.store.Claim(f.Addr, a); err != nil {
			return err
		}
		claimed = append(claimed, f.Addr)
	}
	if len(p.cursor) > 0 {
		next := make(map[string]netip.Addr, len(last)+len(p.cursor))
		for k, v := range last {
			next[k] = v
		}
		for k, v := range p.cursor {
			next[k] = v
		}
		if err := m.store.SetLastReserved(next); err != nil {
			return err
		}
	}
	return m.store.Sync()
}

// Get returns the addresses a holds, sorted (IPv4 first).
func (m *IPAM) Get(a Attachment) ([]netip.Addr, error) {
	all, err := m.List()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for ip, h := range all {
		if h == a {
			out = append(out, ip)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// Release frees every address of a; an unknown attachment is not an error,
// an invalid one (see Attachment.Validate) is.
func (m *IPAM) Release(a Attachment) error { return m.release(a, nil) }

// ReleaseAddrs frees those of addrs that a holds: what one ADD claimed
// (Allocation.Fresh), undone without the addresses a held before it.
func (m *IPAM) ReleaseAddrs(a Attachment, addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return nil
	}
	return m.release(a, addrs)
}

// release frees the addresses a holds, only those in only unless it is nil.
func (m *IPAM) release(a Attachment, only []netip.Addr) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	err := m.locked(func() error {
		held, err := m.store.Reservations()
		if err != nil {
			return err
		}
		var errs []error
		for ip, h := range held {
			if h == a && (only == nil || slices.Contains(only, ip)) {
				errs = append(errs, m.store.Unclaim(ip))
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("release %s: %w", a, err)
	}
	return nil
}

// GC frees every address whose attachment is not in valid and returns the
// attachments it freed, sorted; addresses whose holder cannot be read (a
// foreign file in the store) are freed too and reported as the zero
// Attachment. It also removes what crashed writers left behind (on disk:
// attachment names holding no address, stray temporary files).
func (m *IPAM) GC(valid []Attachment) ([]Attachment, error) {
	keep := make(map[Attachment]bool, len(valid))
	for _, a := range valid {
		keep[a] = true
	}
	var freed []Attachment
	err := m.locked(func() error {
		held, err := m.store.Reservations()
		if err != nil {
			return err
		}
		errs := []error{m.store.Cleanup()}
		for ip, h := range held {
			if keep[h] {
				continue
			}
			if err := m.store.Unclaim(ip); err != nil {
				errs = append(errs, err)
				continue
			}
			if !slices.Contains(freed, h) {
				freed = append(freed, h)
			}
		}
		return errors.Join(errs...)
	})
	slices.SortFunc(freed, compareAttachments)
	if err != nil {
		return freed, fmt.Errorf("gc: %w", err)
	}
	return freed, nil
}

// List returns every reservation.
func (m *IPAM) List() (map[netip.Addr]Attachment, error) {
	var out map[netip.Addr]Attachment
	err := m.locked(func() (err error) {
		out, err = m.store.Reservations()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list reservations: %w", err)
	}
	return out, nil
}

// Free returns how many addresses are still free in the ranges of each
// family, saturating at math.MaxUint64.
func (m *IPAM) Free(ranges []conf.Range) (v4, v6 uint64, err error) {
	held, err := m.List()
	if err != nil {
		return 0, 0, err
	}
	v4, v6 = free(ranges, held)
	return v4, v6, nil
}

func (m *IPAM) locked(f func() error) error {
	if err := m.store.Lock(); err != nil {
		return err
	}
	err := f()
	if uerr := m.store.Unlock(); uerr != nil {
		err = errors.Join(err, uerr)
	}
	return err
}

// Validate checks that a can name a reservation: the container ID follows
// the CNI rule ^[A-Za-z0-9][A-Za-z0-9_.-]*$ (at most 238 bytes, so that
// store file names stay within NAME_MAX) and the interface name is a
// valid Linux interface name (1-15 bytes, not "." or "..", no '/', ':' or
// whitespace).
func (a Attachment) Validate() error {
	if !validName(a.ContainerID) || len(a.ContainerID) > maxContainerID {
		return fmt.Errorf("invalid container ID %q: want up to %d letters, digits, '_', '.' and '-', starting with a letter or digit",
			a.ContainerID, maxContainerID)
	}
	if len(a.IfName) == 0 || len(a.IfName) > 15 || a.IfName == "." || a.IfName == ".." ||
		strings.ContainsAny(a.IfName, "/: \t\n\v\f\r\x00") {
		return fmt.Errorf("invalid interface name %q", a.IfName)
	}
	return nil
}

// validName reports whether s matches ^[A-Za-z0-9][A-Za-z0-9_.-]*$, the CNI
// rule for container IDs and network names; such a name is a safe single
// path component.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

func compareAttachments(x, y Attachment) int {
	if c := strings.Compare(x.ContainerID, y.ContainerID); c != 0 {
		return c
	}
	return strings.Compare(x.IfName, y.IfName)
}
