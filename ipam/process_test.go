package ipam

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weir-cni/weir/conf"
)

// The tests in this file re-run the test binary as a helper process
// (WEIR_IPAM_HELPER=mode) to allocate from several processes at once and to
// kill a process with SIGKILL at chosen points.

func TestMain(m *testing.M) {
	if mode := os.Getenv("WEIR_IPAM_HELPER"); mode != "" {
		if err := helper(mode); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helper is the child side. Its environment: WEIR_IPAM_DIR (data dir),
// WEIR_IPAM_RANGES ("subnet[,start,end];..."), WEIR_IPAM_ID (container ID
// prefix), WEIR_IPAM_N (allocations), WEIR_IPAM_POINT (crash point).
func helper(mode string) error {
	var ranges []conf.Range
	for _, s := range strings.Split(os.Getenv("WEIR_IPAM_RANGES"), ";") {
		ranges = append(ranges, mkRange(s))
	}
	id := os.Getenv("WEIR_IPAM_ID")
	stdin := bufio.NewReader(os.Stdin)
	waitParent := func() { io.Copy(io.Discard, stdin) } // until the parent closes stdin or dies
	m, err := Open(os.Getenv("WEIR_IPAM_DIR"), "net1")
	if err != nil {
		return err
	}
	switch mode {
	case "hold-lock":
		if err := m.store.Lock(); err != nil {
			return err
		}
		fmt.Println("locked")
		waitParent()
	case "crash":
		point := os.Getenv("WEIR_IPAM_POINT")
		crashPoint = func(p string) {
			if p == point {
				fmt.Println("at", p)
				waitParent()
				os.Exit(3)
			}
		}
		_, err := m.Allocate(Attachment{ContainerID: id, IfName: "eth0"}, ranges, nil)
		return err
	case "alloc":
		n, _ := strconv.Atoi(os.Getenv("WEIR_IPAM_N"))
		fmt.Println("ready")
		stdin.ReadString('\n') // start together
		for i := range n {
			a := Attachment{ContainerID: fmt.Sprintf("%s-%d", id, i), IfName: "eth0"}
			al, err := m.Allocate(a, ranges, nil)
			if err == nil && i%4 == 0 { // churn
				if err = m.Release(a); err == nil {
					al, err = m.Allocate(a, ranges, nil)
				}
			}
			if err != nil {
				return err
			}
			line := a.ContainerID
			for _, x := range al {
				line += " " + x.Addr.String()
			}
			fmt.Println(line)
		}
	case "churn":
		for i := 0; ; i++ {
			a := Attachment{ContainerID: fmt.Sprintf("%s-%d", id, i%7), IfName: "eth0"}
			if _, err := m.Allocate(a, ranges, nil); err != nil {
				return err
			}
			if i%2 == 0 {
				if err := m.Release(a); err != nil {
					return err
				}
			}
			fmt.Println(i)
		}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	return m.Close()
}

type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Scanner
	stderr *bytes.Buffer
}

func startChild(t *testing.T, mode, dir, ranges, id string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WEIR_IPAM_HELPER="+mode, "WEIR_IPAM_DIR="+dir,
		"WEIR_IPAM_RANGES="+ranges, "WEIR_IPAM_ID="+id)
	cmd.Env = append(cmd.Env, env...)
	c := &child{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.out = bufio.NewScanner(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return c
}

// expect reads the child's next line and fails unless it is want.
func (c *child) expect(t *testing.T, want string) {
	t.Helper()
	if !c.out.Scan() {
		c.cmd.Wait()
		t.Fatalf("child ended before printing %q: %s", want, c.stderr)
	}
	if got := c.out.Text(); got != want {
		t.Fatalf("child printed %q, want %q", got, want)
	}
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := c.cmd.Wait(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", err)
	}
}

// checkStore fails unless every file in the store is the lock, a cursor, a
// spare sharing no inode with an address, an attachment name, or a complete
// claim: a hard link of an attachment name.
func checkStore(t *testing.T, dir string) {
	t.Helper()
	d := filepath.Join(dir, "net1")
	ents, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	var atts, spares, ips []os.FileInfo
	for _, e := range ents {
		name := e.Name()
		fi, err := os.Lstat(filepath.Join(d, name))
		if err != nil {
			t.Fatal(err)
		}
		_, isAddr := addrName(name)
		switch {
		case name == lockName || strings.HasPrefix(name, lastPrefix):
		case strings.HasPrefix(name, sparePrefix):
			spares = append(spares, fi)
		case strings.HasPrefix(name, attPrefix):
			atts = append(atts, fi)
		case isAddr:
			ips = append(ips, fi)
		default:
			t.Errorf("unexpected file %q in the store", name)
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(atts, func(a os.FileInfo) bool { return os.SameFile(a, ip) }) {
			t.Errorf("claim %s is not a hard link of an attachment name", ip.Name())
		}
		if slices.ContainsFunc(spares, func(a os.FileInfo) bool { return os.SameFile(a, ip) }) {
			t.Errorf("claim %s shares its inode with a spare", ip.Name())
		}
	}
}

// allocateWithin runs Allocate and fails the test if it blocks for a
// minute: a wedged lock shows up as a failure, not a hung test binary.
func allocateWithin(t *testing.T, m *IPAM, a Attachment, ranges []conf.Range) []Allocation {
	t.Helper()
	type result struct {
		al  []Allocation
		err error
	}
	done := make(chan result, 1)
	go func() {
		al, err := m.Allocate(a, ranges, nil)
		done <- result{al, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Allocate for %s: %v", a, r.err)
		}
		return r.al
	case <-time.After(time.Minute):
		t.Fatalf("Allocate for %s is blocked: the store is wedged", a)
		return nil
	}
}

func TestDiskConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs, each = 4, 32
	rs := "10.0.0.0/24,10.0.0.100,10.0.0.227;fd00::/64" // 128 IPv4 addresses
	var children []*child
	for p := range procs {
		c := startChild(t, "alloc", dir, rs, fmt.Sprintf("p%d", p), "WEIR_IPAM_N="+strconv.Itoa(each))
		c.expect(t, "ready")
		children = append(children, c)
	}
	for _, c := range children {
		io.WriteString(c.stdin, "go\n")
	}
	want := map[netip.Addr]Attachment{}
	for _, c := range children {
		for c.out.Scan() {
			f := strings.Fields(c.out.Text())
			for _, s := range f[1:] {
				ip := netip.MustParseAddr(s)
				if prev, dup := want[ip]; dup {
					t.Fatalf("%s given to both %v and %s", ip, prev, f[0])
				}
				want[ip] = Attachment{ContainerID: f[0], IfName: "eth0"}
			}
		}
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child: %v: %s", err, c.stderr)
		}
	}
	if len(want) != 2*procs*each {
		t.Fatalf("children reported %d addresses, want %d", len(want), 2*procs*each)
	}
	m := openT(t, dir)
	got, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	for ip, a := range want {
		if got[ip] != a {
			t.Errorf("%s is held by %v in the store, child reported %v", ip, got[ip], a)
		}
	}
	if len(got) != len(want) {
		t.Errorf("store holds %d reservations, children reported %d", len(got), len(want))
	}
	if _, err := m.Allocate(podA, rngs(t, strings.Split(rs, ";")...), nil); !errors.Is(err, ErrExhausted) {
		t.Fatalf("allocation past the end: %v, want ErrExhausted", err)
	}
}

func TestKilledLockHolderDoesNotWedgeTheStore(t *testing.T) {
	dir := t.TempDir()
	c := startChild(t, "hold-lock", dir, "10.0.0.0/24", "x")
	c.expect(t, "locked")
	f, err := os.Open(filepath.Join(dir, "net1", lockName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("lock while the child holds it: %v, want EWOULDBLOCK", err)
	}
	c.kill(t)
	m := openT(t, dir)
	al := allocateWithin(t, m, podA, rngs(t, "10.0.0.0/24"))
	if al[0].Addr != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("Allocate after the kill = %v, want 10.0.0.1", al)
	}
}

func TestKilledMidAllocateLeavesAUsableStore(t *testing.T) {
	tests := []struct {
		name, point, ranges string
		// the dead child's reservations and the retry's answer
		held, retry []string
		orphan      bool // an attachment name holding no address is left
	}{
		{name: "killed after creating the attachment, before any claim", point: "attached",
			ranges: "10.0.0.0/24;fd00::/64", held: nil, retry: []string{"10.0.0.2", "fd00::2"}, orphan: true},
		{name: "killed after claiming ipv4 of a dual-stack allocation", point: "claimed",
			ranges: "10.0.0.0/24;fd00::/64", held: []string{"10.0.0.1"}, retry: []string{"10.0.0.1", "fd00::2"}},
		{name: "killed after claiming its only address", point: "claimed",
			ranges: "fd00::/64", held: []string{"fd00::1"}, retry: []string{"fd00::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			dead := Attachment{ContainerID: "dead", IfName: "eth0"}
			c := startChild(t, "crash", dir, tt.ranges, dead.ContainerID, "WEIR_IPAM_POINT="+tt.point)
			c.expect(t, "at "+tt.point)
			c.kill(t)
			checkStore(t, dir)
			orphan := filepath.Join(dir, "net1", attName(dead))
			if _, err := os.Lstat(orphan); (err == nil) != (tt.orphan || len(tt.held) > 0) {
				t.Fatalf("attachment name after the kill: %v", err)
			}

			m := openT(t, dir)
			ranges := rngs(t, strings.Split(tt.ranges, ";")...)
			held, err := m.Get(dead)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(held); got != fmt.Sprint(addrs(tt.held...)) {
				t.Fatalf("dead attachment holds %s, want %v", got, tt.held)
			}
			other := allocateWithin(t, m, podB, ranges)
			for _, al := range other {
				if got, _ := m.List(); got[al.Addr] != podB {
					t.Fatalf("%s handed to %v but the store says %v", al.Addr, podB, got[al.Addr])
				}
			}
			var retry []string
			for _, al := range allocateWithin(t, m, dead, ranges) {
				retry = append(retry, al.Addr.String())
			}
			if fmt.Sprint(retry) != fmt.Sprint(tt.retry) {
				t.Fatalf("retried Allocate = %v, want %v", retry, tt.retry)
			}
			checkStore(t, dir)
			if err := m.Release(dead); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(orphan); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("attachment name after Release: %v", err)
			}
		})
	}
}

// TestKilledAtRandomMomentsLeavesAUsableStore kills a process that
// allocates and releases in a loop at whatever point it has reached, a few
// times over, and checks the store each time.
func TestKilledAtRandomMomentsLeavesAUsableStore(t *testing.T) {
	dir := t.TempDir()
	const rs = "10.0.0.0/28;fd00::/124"
	for round := range 5 {
		c := startChild(t, "churn", dir, rs, "churn")
		for range 20 + 13*round {
			if !c.out.Scan() {
				c.cmd.Wait()
				t.Fatalf("round %d: child ended early: %s", round, c.stderr)
			}
		}
		c.kill(t)
		checkStore(t, dir)
		m := openT(t, dir)
		a := Attachment{ContainerID: fmt.Sprintf("after%d", round), IfName: "eth0"}
		al := allocateWithin(t, m, a, rngs(t, strings.Split(rs, ";")...))
		if len(al) != 2 {
			t.Fatalf("round %d: Allocate = %v, want one address per family", round, al)
		}
		if err := m.Release(a); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
}
