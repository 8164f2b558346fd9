package ipam

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Layout of a network's directory:
//
//	lock                  flock(2)ed around every operation; the kernel drops
//	                      the lock when its holder dies, so kill -9 cannot
//	                      wedge the store
//	@cid@eth0             an empty file: one inode per attachment
//	10.244.1.5, fd00::5   hard links to that inode, one per reserved address,
//	                      named by the address's canonical text form; link(2)
//	                      is atomic and fails if the name exists, so a claim
//	                      is either whole or absent (`ls -li` shows who holds
//	                      what)
//	spare@1234            an attachment inode kept for reuse after a release
//	last@S-E@10.244.1.5   the range S-E's round-robin cursor, moved by
//	                      rename(2): atomic, and no temporary file
//
// One getdents(2) pass reads everything: an address's holder is the
// attachment name that shares its inode number, so listing costs no
// per-address syscall. Creating an inode is the dearest step measured on
// this kind of VM (0.02-1.8 ms, growing with load and directory size,
// against 30-80 µs for link and rename), so inodes are recycled: releasing
// renames the attachment's inode to a spare and the next allocation renames
// a spare back, and a dual-stack pod links both addresses to one inode.
const (
	lockName    = "lock"
	attPrefix   = "@"
	sparePrefix = "spare@"
	lastPrefix  = "last@"
	tmpPrefix   = ".tmp-" // not written any more; Cleanup removes strays
	maxSpares   = 16
)

// maxContainerID keeps "@" + containerID + "@" + ifname within NAME_MAX.
const maxContainerID = 255 - 2 - 15

// crashPoint is called at the points where a crash is most interesting;
// tests replace it to stop a child process there.
var crashPoint = func(string) {}

// DiskOptions tunes the disk store.
type DiskOptions struct {
	// Durable fsyncs the directory after each allocation. Off by default:
	// the fsync costs 0.1-8 ms here, and a reservation that a power loss
	// forgets belonged to a pod that the power loss killed anyway; a
	// release it forgets is what GC is for. A claim is a directory entry
	// made by one link(2), so no crash leaves it half-written either way.
	Durable bool
}

type diskStore struct {
	dir   string
	opts  DiskOptions
	mu    sync.Mutex // flock is per open file: goroutines need their own lock
	lockf *os.File
	dirfd int
	buf   []byte
	cur   *dirState // what the directory holds, valid while locked
}

// OpenDisk opens (creating, 0700) the disk store for one network at
// filepath.Join(dataDir, network). The plugin runs as root and what the
// directory holds decides which addresses pods get, so the directory must
// not be a symlink, must be owned by root or this user and writable by
// no one else; every later operation goes through the directory opened
// here, and no name in it is followed when it is a symlink.
func OpenDisk(dataDir, network string, o DiskOptions) (Store, error) {
	if dataDir == "" {
		return nil, errors.New("open ipam store: empty data directory")
	}
	if !validName(network) {
		return nil, fmt.Errorf("open ipam store: invalid network name %q", network)
	}
	dir := filepath.Join(dataDir, network)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open ipam store: %w", err)
	}
	dirfd, err := openStoreDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open ipam store: %w", err)
	}
	s := &diskStore{dir: dir, opts: o, dirfd: dirfd, buf: make([]byte, 32<<10)}
	lockfd, err := s.openAt(lockName, unix.O_RDWR|unix.O_CREAT)
	if err != nil {
		unix.Close(dirfd)
		return nil, fmt.Errorf("open ipam store: %w", err)
	}
	s.lockf = os.NewFile(uintptr(lockfd), s.path(lockName))
	return s, nil
}

// errUnsafeDir marks a store directory that others could change.
var errUnsafeDir = errors.New("unsafe ipam store directory")

// openStoreDir opens dir without following a symlink and checks that no
// one but root or this user can change what it holds.
func openStoreDir(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if fi, lerr := os.Lstat(dir); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return -1, fmt.Errorf("%s is a symlink, want a directory: %w", dir, errUnsafeDir)
		}
		return -1, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, &fs.PathError{Op: "stat", Path: dir, Err: err}
	}
	euid := uint32(os.Geteuid())
	switch {
	case st.Uid != 0 && st.Uid != euid:
		err = fmt.Errorf("%s is owned by uid %d, want root or uid %d: %w", dir, st.Uid, euid, errUnsafeDir)
	case st.Mode&0o022 != 0:
		err = fmt.Errorf("%s has mode %#o, writable by group or others (want 0700): %w", dir, st.Mode&0o7777, errUnsafeDir)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// openAt opens name in the store directory, creating it 0600 when flag
// says so, and never follows it when it is a symlink: a name planted in
// the directory cannot make the plugin open or create a file elsewhere.
func (s *diskStore) openAt(name string, flag int) (int, error) {
	for {
		fd, err := unix.Openat(s.dirfd, name, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: s.path(name), Err: err}
		}
		return fd, nil
	}
}

// touch creates name in the store directory if it is missing.
func (s *diskStore) touch(name string, flag int) error {
	fd, err := s.openAt(name, flag|unix.O_CREAT)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// link, rename and unlink work on names in the store directory; none of
// them follows a symlink.
func (s *diskStore) link(oldname, newname string) error {
	if err := unix.Linkat(s.dirfd, oldname, s.dirfd, newname, 0); err != nil {
		return &os.LinkError{Op: "link", Old: s.path(oldname), New: s.path(newname), Err: err}
	}
	return nil
}

func (s *diskStore) rename(oldname, newname string) error {
	if err := unix.Renameat(s.dirfd, oldname, s.dirfd, newname); err != nil {
		return &os.LinkError{Op: "rename", Old: s.path(oldname), New: s.path(newname), Err: err}
	}
	return nil
}

// remove unlinks name; a name already gone is not an error.
func (s *diskStore) remove(name string) error {
	if err := unix.Unlinkat(s.dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &fs.PathError{Op: "remove", Path: s.path(name), Err: err}
	}
	return nil
}

func (s *diskStore) Lock() error {
	s.mu.Lock()
	if err := flock(s.lockf, syscall.LOCK_EX); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("lock %s: %w", s.dir, err)
	}
	s.cur = nil
	return nil
}

func (s *diskStore) Unlock() error {
	defer s.mu.Unlock()
	s.cur = nil
	if err := flock(s.lockf, syscall.LOCK_UN); err != nil {
		return fmt.Errorf("unlock %s: %w", s.dir, err)
	}
	return nil
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func (s *diskStore) path(name string) string { return filepath.Join(s.dir, name) }

// load returns the directory's state, reading it once per locked section;
// the mutating methods keep it up to date.
func (s *diskStore) load() (*dirState, error) {
	if s.cur != nil {
		return s.cur, nil
	}
	st, err := scanDir(s.dir, s.dirfd, s.buf)
	if err != nil {
		return nil, err
	}
	s.cur = st
	return st, nil
}

func (s *diskStore) Reservations() (map[netip.Addr]Attachment, error) {
	st, err := s.load()
	if err != nil {
		return nil, err
	}
	return maps.Clone(st.held), nil
}

func (s *diskStore) Claim(ip netip.Addr, a Attachment) error {
	st, err := s.load()
	if err != nil {
		return err
	}
	_, attached := st.attIno[a]
	if !attached {
		if err := s.attach(st, a); err != nil {
			return fmt.Errorf("claim %s: %w", ip, err)
		}
		crashPoint("attached")
	}
	if err := s.link(attName(a), ip.String()); err != nil {
		if !attached { // leave no attachment name holding nothing
			delete(st.attIno, a)
			err = errors.Join(err, s.remove(attName(a)))
		}
		return fmt.Errorf("claim %s: %w", ip, err)
	}
	st.held[ip] = a
	crashPoint("claimed")
	return nil
}

// attach gives a its inode: a spare if there is one, else a new file.
func (s *diskStore) attach(st *dirState, a Attachment) error {
	if n := len(st.spares); n > 0 {
		sp := st.spares[n-1]
		st.spares = st.spares[:n-1]
		if err := s.rename(sp.name, attName(a)); err == nil {
			st.attIno[a] = sp.ino
			return nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := s.touch(attName(a), unix.O_RDONLY); err != nil {
		return err
	}
	st.attIno[a] = 0 // unknown; it is only named, never compared, before the next scan
	return nil
}

// Unclaim removes the address, then, once its attachment holds nothing
// else, turns the attachment's inode into a spare.
func (s *diskStore) Unclaim(ip netip.Addr) error {
	st, err := s.load()
	if err != nil {
		return err
	}
	if err := s.remove(ip.String()); err != nil {
		return fmt.Errorf("unclaim %s: %w", ip, err)
	}
	h, ok := st.held[ip]
	delete(st.held, ip)
	if !ok || h == (Attachment{}) {
		return nil
	}
	for _, o := range st.held {
		if o == h {
			return nil
		}
	}
	ino, known := st.attIno[h]
	delete(st.attIno, h)
	if known && ino != 0 && len(st.spares) < maxSpares {
		sp := spare{name: spareName(ino), ino: ino}
		if err := s.rename(attName(h), sp.name); err == nil {
			st.spares = append(st.spares, sp)
			return nil
		}
	}
	if err := s.remove(attName(h)); err != nil {
		return fmt.Errorf("unclaim %s: %w", ip, err)
	}
	return nil
}

func (s *diskStore) LastReserved() (map[string]netip.Addr, error) {
	st, err := s.load()
	if err != nil {
		return nil, err
	}
	out := make(map[string]netip.Addr, len(st.last))
	for k, c := range st.last {
		out[k] = c.addr
	}
	return out, nil
}

// SetLastReserved moves each changed cursor by renaming it; a range seen
// for the first time gets a new (empty) cursor file.
func (s *diskStore) SetLastReserved(m map[string]netip.Addr) error {
	st, err := s.load()
	if err != nil {
		return err
	}
	for k, ip := range m {
		if k == "" || strings.ContainsAny(k, "@/\x00") {
			return fmt.Errorf("set last reserved: invalid range key %q", k)
		}
		old, ok := st.last[k]
		if ok && old.addr == ip {
			continue
		}
		name := cursorName(k, ip)
		err := fs.ErrNotExist
		if ok {
			err = s.rename(old.name, name)
		}
		if errors.Is(err, fs.ErrNotExist) {
			err = s.touch(name, unix.O_WRONLY)
		}
		if err != nil {
			return fmt.Errorf("set last reserved %s: %w", k, err)
		}
		st.last[k] = cursor{name: name, addr: ip}
	}
	return nil
}

func (s *diskStore) Sync() error {
	if !s.opts.Durable {
		return nil
	}
	if err := syscall.Fsync(s.dirfd); err != nil {
		return fmt.Errorf("sync %s: %w", s.dir, err)
	}
	return nil
}

// Cleanup removes what crashed writers leave: attachment names that hold
// no address, duplicate or unreadable cursors, spares beyond the pool size
// or still linked to an address, stray temporary files. It
// runs under the lock, so no live writer is midway.
func (s *diskStore) Cleanup() error {
	s.cur = nil
	st, err := s.load()
	if err != nil {
		return err
	}
	s.cur = nil
	var errs []error
	for _, name := range st.stale {
		if err := s.remove(name); err != nil {
			errs = append(errs, fmt.Errorf("clean store: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (s *diskStore) Close() error {
	err := s.lockf.Close()
	if s.dirfd >= 0 {
		err = errors.Join(err, syscall.Close(s.dirfd))
		s.dirfd = -1
	}
	return err
}
