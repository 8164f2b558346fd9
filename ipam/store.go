package ipam

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"sync"
)

// Store keeps reservations. IPAM calls every method but Lock and Close
// between Lock and Unlock, so implementations need no further locking of
// their own between processes or goroutines sharing the lock.
type Store interface {
	// Lock takes the store's exclusive lock (between goroutines and
	// processes); Unlock gives it back.
	Lock() error
	Unlock() error
	// Reservations returns every reserved address and its holder. An
	// address whose holder cannot be read maps to the zero Attachment.
	Reservations() (map[netip.Addr]Attachment, error)
	// Claim reserves ip for a atomically; it fails with an error matching
	// fs.ErrExist if ip is already reserved.
	Claim(ip netip.Addr, a Attachment) error
	// Unclaim frees ip; freeing a free address is not an error.
	Unclaim(ip netip.Addr) error
	// LastReserved returns the last address dynamically reserved per range
	// key; SetLastReserved records new values. The record only steers the
	// round-robin, so each key must be replaced atomically but a crash
	// between keys is harmless.
	LastReserved() (map[string]netip.Addr, error)
	SetLastReserved(map[string]netip.Addr) error
	// Sync makes the claims and the record durable.
	Sync() error
	// Cleanup removes leftovers of writers that crashed.
	Cleanup() error
	Close() error
}

// NewMemStore returns a Store kept in memory, for tests.
func NewMemStore() Store {
	return &memStore{held: map[netip.Addr]Attachment{}, last: map[string]netip.Addr{}}
}

type memStore struct {
	mu   sync.Mutex
	held map[netip.Addr]Attachment
	last map[string]netip.Addr
}

func (s *memStore) Lock() error   { s.mu.Lock(); return nil }
func (s *memStore) Unlock() error { s.mu.Unlock(); return nil }
func (s *memStore) Sync() error   { return nil }
func (s *memStore) Cleanup() error {
	return nil
}
func (s *memStore) Close() error { return nil }

func (s *memStore) Reservations() (map[netip.Addr]Attachment, error) {
	return maps.Clone(s.held), nil
}

func (s *memStore) Claim(ip netip.Addr, a Attachment) error {
	if _, ok := s.held[ip]; ok {
		return fmt.Errorf("claim %s: %w", ip, fs.ErrExist)
	}
	s.held[ip] = a
	return nil
}

func (s *memStore) Unclaim(ip netip.Addr) error {
	delete(s.held, ip)
	return nil
}

func (s *memStore) LastReserved() (map[string]netip.Addr, error) {
	return maps.Clone(s.last), nil
}

func (s *memStore) SetLastReserved(m map[string]netip.Addr) error {
	if m == nil {
		return errors.New("set last reserved: nil record")
	}
	s.last = maps.Clone(m)
	return nil
}
