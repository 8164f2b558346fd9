package ipam

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func openT(t testing.TB, dataDir string) *IPAM {
	t.Helper()
	m, err := Open(dataDir, "net1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestDiskReservationsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	m := openT(t, dir)
	ranges := rngs(t, "10.0.0.0/24", "fd00::/64")
	got, err := m.Allocate(podA, ranges, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2 := openT(t, dir)
	again, err := m2.Allocate(podA, ranges, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(heldAgain(got), again) {
		t.Fatalf("Allocate after reopen = %v, want %v", again, got)
	}
	held, err := m2.Get(podA)
	if err != nil {
		t.Fatal(err)
	}
	if want := addrs("10.0.0.1", "fd00::1"); !slices.Equal(held, want) {
		t.Fatalf("Get after reopen = %v, want %v", held, want)
	}
}

func TestDiskClaimsAreHardLinksOfTheAttachmentInode(t *testing.T) {
	dir := t.TempDir()
	d := filepath.Join(dir, "net1")
	m := openT(t, dir)
	ranges := rngs(t, "10.0.0.0/24", "fd00::/64")
	if _, err := m.Allocate(podA, ranges, nil); err != nil {
		t.Fatal(err)
	}
	att, err := os.Lstat(filepath.Join(d, "@aaa@eth0"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"10.0.0.1", "fd00::1"} {
		if fi, err := os.Lstat(filepath.Join(d, name)); err != nil || !os.SameFile(fi, att) {
			t.Errorf("%s is not a hard link of @aaa@eth0 (%v)", name, err)
		}
	}
	st, err := os.Stat(d)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("store directory mode = %v, want 0700", st.Mode().Perm())
	}

	// Releasing keeps the inode as a spare; the next attachment reuses it.
	if err := m.Release(podA); err != nil {
		t.Fatal(err)
	}
	var names []string
	ents, _ := os.ReadDir(d)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{"last@10.0.0.1-10.0.0.254@10.0.0.1", "last@fd00::1-fd00::ffff:ffff:ffff:ffff@fd00::1", "lock", spareName(inode(t, att))}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("after Release the store holds %v, want %v", names, want)
	}
	if _, err := m.Allocate(podB, ranges, nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(d, "@bbb@eth0")); err != nil || !os.SameFile(fi, att) {
		t.Fatalf("the next attachment did not reuse the spare inode (%v)", err)
	}
}

func inode(t *testing.T, fi os.FileInfo) uint64 {
	t.Helper()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("no inode number in %T", fi.Sys())
	}
	return st.Ino
}

func TestDiskSparePoolIsBounded(t *testing.T) {
	dir := t.TempDir()
	m := openT(t, dir)
	ranges := rngs(t, "10.0.0.0/24")
	var all []Attachment
	for i := range maxSpares + 5 {
		a := Attachment{ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"}
		if _, err := m.Allocate(a, ranges, nil); err != nil {
			t.Fatal(err)
		}
		all = append(all, a)
	}
	for _, a := range all {
		if err := m.Release(a); err != nil {
			t.Fatal(err)
		}
	}
	spares, _ := filepath.Glob(filepath.Join(dir, "net1", sparePrefix+"*"))
	if len(spares) != maxSpares {
		t.Fatalf("%d spares after releasing %d attachments, want %d", len(spares), len(all), maxSpares)
	}
}

func TestDiskRoundRobinSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ranges := rngs(t, "10.0.0.0/24")
	var got []string
	for _, a := range []Attachment{podA, podB, podC} {
		m := openT(t, dir)
		al, err := m.Allocate(a, ranges, nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, al[0].Addr.String())
		if err := m.Release(a); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
	if want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}; !slices.Equal(got, want) {
		t.Fatalf("allocate/release across reopen = %v, want %v", got, want)
	}
}

func TestDiskUnreadableCursorsAreIgnoredAndCleaned(t *testing.T) {
	dir := t.TempDir()
	m := openT(t, dir)
	d := filepath.Join(dir, "net1")
	junk := []string{"last@garbage", "last@10.0.0.1-10.0.0.254@not-an-ip", "last@@10.0.0.7", "last@10.0.0.1-10.0.0.254@10.0.0.09"}
	for _, name := range junk {
		if err := os.WriteFile(filepath.Join(d, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	al, err := m.Allocate(podA, rngs(t, "10.0.0.0/24"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if al[0].Addr != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("Allocate = %v, want 10.0.0.1", al)
	}
	if _, err := m.GC([]Attachment{podA}); err != nil {
		t.Fatal(err)
	}
	for _, name := range junk {
		if _, err := os.Lstat(filepath.Join(d, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after GC: %v, want it removed", name, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(d, "last@10.0.0.1-10.0.0.254@10.0.0.1")); err != nil {
		t.Errorf("the valid cursor after GC: %v", err)
	}
}

func TestDiskForeignFiles(t *testing.T) {
	dir := t.TempDir()
	m := openT(t, dir)
	d := filepath.Join(dir, "net1")
	for name, content := range map[string]string{
		"README":    "not an address",
		"10.0.0.01": "non-canonical name: not a reservation",
		"10.0.0.1":  "a regular file named like an address: reserved by someone unknown",
	} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	foreign := Attachment{ContainerID: "foreign", IfName: "eth0"}
	if err := os.Symlink("foreign/eth0", filepath.Join(d, "10.0.0.2")); err != nil {
		t.Fatal(err)
	}
	al, err := m.Allocate(podA, rngs(t, "10.0.0.0/24"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if al[0].Addr != netip.MustParseAddr("10.0.0.3") {
		t.Fatalf("Allocate = %v, want 10.0.0.3 (10.0.0.1 and .2 are taken by foreign files)", al)
	}
	if got, _ := m.Get(foreign); !slices.Equal(got, addrs("10.0.0.2")) {
		t.Fatalf("holder of a foreign symlink claim: Get = %v, want 10.0.0.2", got)
	}
	freed, err := m.GC([]Attachment{podA})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Attachment{{}, foreign}; !slices.Equal(freed, want) {
		t.Fatalf("GC freed %v, want %v", freed, want)
	}
	for name, want := range map[string]bool{"README": true, "10.0.0.01": true, "10.0.0.1": false, "10.0.0.2": false} {
		if _, err := os.Lstat(filepath.Join(d, name)); (err == nil) != want {
			t.Errorf("%s exists = %v after GC, want %v", name, err == nil, want)
		}
	}
}

func TestOpenRejectsUnsafeNetworkNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", ".", "..", "../x", "a/b", "-x", "a b"} {
		if m, err := Open(dir, name); err == nil {
			m.Close()
			t.Errorf("Open(%q) succeeded, want an error", name)
		}
	}
	if _, err := Open("", "net1"); err == nil {
		t.Error("Open with an empty data directory succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("rejected Opens created %v", ents)
	}
}

func TestDiskGCRemovesCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	m := openT(t, dir)
	if _, err := m.Allocate(podA, rngs(t, "10.0.0.0/24"), nil); err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(dir, "net1")
	// an attachment name whose address was never linked, a temporary
	// file, a "spare" still linked to an address
	leftovers := []string{filepath.Join(d, "@ghost@eth0"), filepath.Join(d, tmpPrefix+"123"), filepath.Join(d, sparePrefix+"1")}
	for _, p := range leftovers[:2] {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(d, "@aaa@eth0"), leftovers[2]); err != nil {
		t.Fatal(err)
	}
	freed, err := m.GC([]Attachment{podA})
	if err != nil {
		t.Fatal(err)
	}
	if len(freed) != 0 {
		t.Fatalf("GC freed %v, want nothing: leftovers hold no address", freed)
	}
	for _, p := range leftovers {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leftover %s after GC: %v", p, err)
		}
	}
	if got, _ := m.Get(podA); len(got) != 1 {
		t.Fatalf("GC dropped a valid reservation: %v", got)
	}
	if _, err := os.Lstat(filepath.Join(d, "@aaa@eth0")); err != nil {
		t.Fatalf("GC removed a live attachment: %v", err)
	}
}

func TestDiskUseAfterCloseFails(t *testing.T) {
	m := openT(t, t.TempDir())
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Allocate(podA, rngs(t, "10.0.0.0/24"), nil); err == nil {
		t.Fatal("Allocate on a closed store succeeded")
	}
}

// TestDiskConcurrentGoroutines has goroutines allocate from one range of
// exactly as many addresses as they ask for, half through a shared IPAM and
// half through IPAMs of their own: every allocation must succeed and no
// address may be given twice.
func TestDiskConcurrentGoroutines(t *testing.T) {
	dir := t.TempDir()
	ranges := rngs(t, "10.0.0.0/24,10.0.0.10,10.0.0.73", "fd00::/64") // 64 IPv4 addresses
	shared := openT(t, dir)
	const workers, each = 8, 8
	results := make([][]Allocation, workers*each)
	errs := make([]error, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		m := shared
		if w%2 == 1 {
			m = openT(t, dir)
		}
		wg.Go(func() {
			for i := range each {
				n := w*each + i
				a := Attachment{ContainerID: fmt.Sprintf("g%d", n), IfName: "eth0"}
				results[n], errs[n] = m.Allocate(a, ranges, nil)
				if n%3 == 0 && errs[n] == nil { // churn: release and allocate again
					if errs[n] = m.Release(a); errs[n] == nil {
						results[n], errs[n] = m.Allocate(a, ranges, nil)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]Attachment{}
	for n, r := range results {
		for _, al := range r {
			if prev, dup := want[al.Addr]; dup {
				t.Fatalf("%s given to both %v and g%d", al.Addr, prev, n)
			}
			want[al.Addr] = Attachment{ContainerID: fmt.Sprintf("g%d", n), IfName: "eth0"}
		}
	}
	got, err := shared.List()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("store holds %d reservations, allocations report %d", len(got), len(want))
	}
	if _, err := shared.Allocate(podA, ranges, nil); !errors.Is(err, ErrExhausted) {
		t.Fatalf("allocation past the end: %v, want ErrExhausted", err)
	}
}

func TestDiskFailedClaimLeavesNoAttachmentName(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenDisk(dir, "net1", DiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Lock(); err != nil {
		t.Fatal(err)
	}
	defer s.Unlock()
	if _, err := s.Reservations(); err != nil {
		t.Fatal(err)
	}
	// a writer that ignores the lock takes the address after the scan
	if err := os.WriteFile(filepath.Join(dir, "net1", "10.0.0.1"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim(netip.MustParseAddr("10.0.0.1"), podA); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Claim of a taken address: %v, want fs.ErrExist", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "net1", attName(podA))); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("attachment name after the failed claim: %v, want it gone", err)
	}
}

func TestDiskDurableStoreAllocates(t *testing.T) {
	s, err := OpenDisk(t.TempDir(), "net1", DiskOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	m := New(s)
	defer m.Close()
	al, err := m.Allocate(podA, rngs(t, "10.0.0.0/24"), nil)
	if err != nil || len(al) != 1 {
		t.Fatalf("Allocate = %v, %v", al, err)
	}
}

func TestOpenRefusesAStoreDirectoryOthersCouldChange(t *testing.T) {
	cases := []struct {
		name string
		// plant makes dataDir/net1 unsafe; it may skip the case.
		plant   func(t *testing.T, d string)
		wantMsg string
	}{
		{"group-writable directory", func(t *testing.T, d string) { mkdirMode(t, d, 0o770) }, "writable by group or others"},
		{"world-writable directory", func(t *testing.T, d string) { mkdirMode(t, d, 0o777) }, "writable by group or others"},
		{"sticky world-writable directory", func(t *testing.T, d string) { mkdirMode(t, d, 0o1777) }, "writable by group or others"},
		{"directory owned by another user", func(t *testing.T, d string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a directory away")
			}
			mkdirMode(t, d, 0o700)
			if err := os.Chown(d, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 65534"},
		{"symlink to a private directory", func(t *testing.T, d string) {
			if err := os.Symlink(t.TempDir(), d); err != nil {
				t.Fatal(err)
			}
		}, "is a symlink"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "net1")
			tc.plant(t, d)
			m, err := Open(filepath.Dir(d), "net1")
			if err == nil {
				m.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, errUnsafeDir) || !strings.Contains(err.Error(), tc.wantMsg) || !strings.Contains(err.Error(), d) {
				t.Errorf("Open = %v, want an unsafe-directory error naming %s and saying %q", err, d, tc.wantMsg)
			}
			if ents, _ := os.ReadDir(d); len(ents) != 0 {
				t.Errorf("refused Open wrote %v into the directory", ents)
			}
		})
	}
}

func mkdirMode(t *testing.T, d string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func TestDiskNeverFollowsAPlantedSymlink(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.1")
	// locked opens the store, takes its lock and reads the directory, as
	// every IPAM operation starts; plant then runs, as a writer that
	// ignores the lock would, and use creates the planted name.
	locked := func(dataDir string, plant func(), use func(Store) error) error {
		s, err := OpenDisk(dataDir, "net1", DiskOptions{})
		if err != nil {
			return err
		}
		defer s.Close()
		if err := s.Lock(); err != nil {
			return err
		}
		defer s.Unlock()
		if _, err := s.Reservations(); err != nil {
			return err
		}
		plant()
		return use(s)
	}
	cases := []struct {
		name    string
		planted string
		// use makes the store create the planted name, calling plant just
		// before.
		use func(dataDir string, plant func()) error
	}{
		{"lock file", lockName, func(dataDir string, plant func()) error {
			plant()
			s, err := OpenDisk(dataDir, "net1", DiskOptions{})
			if err == nil {
				s.Close()
			}
			return err
		}},
		{"attachment name", attName(podA), func(dataDir string, plant func()) error {
			return locked(dataDir, plant, func(s Store) error { return s.Claim(ip, podA) })
		}},
		{"range cursor", cursorName("k", ip), func(dataDir string, plant func()) error {
			return locked(dataDir, plant, func(s Store) error { return s.SetLastReserved(map[string]netip.Addr{"k": ip}) })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			victim := filepath.Join(t.TempDir(), "victim")
			mkdirMode(t, filepath.Join(dataDir, "net1"), 0o700)
			plant := func() {
				if err := os.Symlink(victim, filepath.Join(dataDir, "net1", tc.planted)); err != nil {
					t.Fatal(err)
				}
			}
			if err := tc.use(dataDir, plant); err == nil {
				t.Errorf("store created %s over a planted symlink without an error", tc.planted)
			}
			if _, err := os.Lstat(victim); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("symlink target was created through the planted %s (%v)", tc.planted, err)
			}
		})
	}
}
