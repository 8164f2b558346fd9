//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/weir-cni/weir/internal/testkit"
)

const (
	parallelOps     = 200
	parallelWorkers = 16
)

// job i's fate: every 10th ADD is killed (half of those are DELeted by the
// runtime afterwards, half left to GC); of the rest, even ones are deleted
// at once and odd ones stay until the end.
type fate int

const (
	addDel fate = iota
	addKeep
	killDel
	killGC
)

func fateOf(i int) fate {
	switch {
	case i%20 == 3:
		return killDel
	case i%20 == 13:
		return killGC
	case i%2 == 0:
		return addDel
	}
	return addKeep
}

// owners records which live attachment holds each address, to catch an
// address handed to two pods at once.
type owners struct {
	mu   sync.Mutex
	byIP map[netip.Addr]string
	errs []string
}

func (o *owners) claim(id string, ips []netip.Addr) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, a := range ips {
		if prev, ok := o.byIP[a]; ok {
			o.errs = append(o.errs, fmt.Sprintf("%s handed to %s while %s still holds it", a, id, prev))
		}
		o.byIP[a] = id
	}
}

// release is called before DEL: once DEL starts, the address may be reused.
func (o *owners) release(ips []netip.Addr) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, a := range ips {
		delete(o.byIP, a)
	}
}

// churn is the state of the parallel test, shared by its workers.
type churn struct {
	n       *node
	store   string
	conf    []byte
	pods    []*testkit.NS
	addTime time.Duration
	own     *owners

	mu        sync.Mutex
	kept      map[string][]netip.Addr
	failures  []string
	killed    int
	leftState int
}

func (c *churn) fail(format string, a ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures = append(c.failures, fmt.Sprintf(format, a...))
}

func (c *churn) call(cmd string, i int) testkit.Call {
	return testkit.Call{Command: cmd, ContainerID: fmt.Sprintf("ctr-%03d", i), Netns: c.pods[i].Path(),
		IfName: "eth0", Path: pluginDir, Conf: c.conf}
}

// job runs the fate of pod i.
func (c *churn) job(i int) {
	add, del := c.call("ADD", i), c.call("DEL", i)
	id := add.ContainerID
	f := fateOf(i)
	if f == killDel || f == killGC {
		// Half are killed at a time (0.2x .. 2x a sequential ADD), half
		// right after their address is claimed.
		frac := float64(i/10) / float64(parallelOps/10-1)
		delay := time.Duration((0.2 + 1.8*frac) * float64(c.addTime))
		wasKilled, err := addKilled(add, delay, (i/20)%2 == 1, c.n, c.store)
		if err != nil {
			c.fail("%s: %v", id, err)
		}
		c.mu.Lock()
		if wasKilled {
			c.killed++
			if claimed(c.store, id) {
				c.leftState++
			}
		}
		c.mu.Unlock()
		if f == killDel {
			if o := execCall(c.n, del); o.Err != nil {
				c.fail("del %s after kill: %v %s", id, o.Err, o.Stderr)
			}
		}
		return
	}
	o := execCall(c.n, add)
	if o.Err != nil {
		c.fail("add %s: %v %s", id, o.Err, o.Stderr)
		return
	}
	ips, err := resultIPs(o.Stdout)
	if err != nil || len(ips) != 2 {
		c.fail("add %s gave %v (%v), want one IPv4 and one IPv6 address", id, ips, err)
		return
	}
	c.own.claim(id, ips)
	if f == addKeep {
		c.mu.Lock()
		c.kept[id] = ips
		c.mu.Unlock()
		return
	}
	c.own.release(ips)
	if o := execCall(c.n, del); o.Err != nil {
		c.fail("del %s: %v %s", id, o.Err, o.Stderr)
	}
}

func resultIPs(stdout []byte) ([]netip.Addr, error) {
	var res current.Result
	if err := json.Unmarshal(stdout, &res); err != nil {
		return nil, fmt.Errorf("decode result %q: %w", stdout, err)
	}
	var out []netip.Addr
	for _, ip := range res.IPs {
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			return nil, fmt.Errorf("result address %v", ip.Address)
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

func TestParallelAddDelWithKilledPlugins(t *testing.T) {
	n := newNode(t)
	nc := n.conf("weirnet")
	nc.Ranges = subnets("10.244.1.0/24", "fd00:10:244:1::/64")
	c := &churn{n: n, store: testkit.Store(n.dataDir, nc.Name), conf: nc.single(),
		own: &owners{byIP: map[netip.Addr]string{}}, kept: map[string][]netip.Addr{}}
	for range parallelOps {
		c.pods = append(c.pods, testkit.NewTestNS(t, "weirt-p-"))
	}
	// Kill delays spread over the life of a plugin run, measured here.
	c.addTime = medianAddTime(t, n, c.conf)

	jobs := make(chan int)
	var wg sync.WaitGroup
	for range parallelWorkers {
		wg.Go(func() {
			for i := range jobs {
				c.job(i)
			}
		})
	}
	for i := range parallelOps {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	for _, f := range c.failures {
		t.Error(f)
	}
	for _, e := range c.own.errs {
		t.Error("duplicate address:", e)
	}
	t.Logf("%d ADDs (a sequential ADD takes %s here), %d plugins killed by SIGKILL before they finished (%d holding an address), %d pods kept",
		parallelOps, c.addTime.Round(time.Millisecond), c.killed, c.leftState, len(c.kept))
	t.Logf("before GC: %d addresses and %d host veths in the node for %d kept pods (the rest is what killed ADDs left)",
		len(n.allocated(nc.Name)), len(n.weirLinks()), len(c.kept))
	c.gcKeepsOnlyKept(t, nc)
	c.deleteKept(t, nc)
}

// gcKeepsOnlyKept runs the runtime's GC listing the pods it still has and
// checks that exactly their addresses and veths remain, still wired.
func (c *churn) gcKeepsOnlyKept(t *testing.T, nc netConf) {
	var valid []types.GCAttachment
	var want []string
	for id, ips := range c.kept {
		valid = append(valid, types.GCAttachment{ContainerID: id, IfName: "eth0"})
		for _, a := range ips {
			want = append(want, a.String())
		}
	}
	rt := newRuntime(t, c.n, nc)
	if err := rt.cni.GCNetworkList(ctxT(t), rt.list, &libcni.GCArgs{ValidAttachments: valid}); err != nil {
		t.Fatalf("gc: %v", err)
	}
	got := c.n.allocated(nc.Name)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("store after gc holds %d addresses, want the %d of kept pods\n got %v\nwant %v", len(got), len(want), got, want)
	}
	if got := c.n.weirLinks(); len(got) != len(c.kept) {
		t.Errorf("node has %d weir host veths after gc, want %d (one per kept pod)", len(got), len(c.kept))
	}
	for i, p := range c.pods {
		if ips, ok := c.kept[fmt.Sprintf("ctr-%03d", i)]; ok {
			checkWired(t, c.n, p, "eth0", ips)
		}
	}
}

// deleteKept DELs the kept pods and checks the node is back to nothing.
func (c *churn) deleteKept(t *testing.T, nc netConf) {
	for i := range c.pods {
		if _, ok := c.kept[fmt.Sprintf("ctr-%03d", i)]; !ok {
			continue
		}
		if o := execCall(c.n, c.call("DEL", i)); o.Err != nil {
			t.Errorf("del ctr-%03d: %v", i, o.Err)
		}
	}
	if got := c.n.allocated(nc.Name); len(got) != 0 {
		t.Errorf("store after deleting everything = %v", got)
	}
	if got := c.n.links(); !slices.Equal(got, []string{"lo device "}) {
		t.Errorf("node links after DEL of every pod and GC = %v, want only lo (a veth without alias is one GC cannot find)", got)
	}
}

// medianAddTime ADDs and DELs a few pods one at a time and returns the
// median ADD duration.
func medianAddTime(t *testing.T, n *node, conf []byte) time.Duration {
	t.Helper()
	var ds []time.Duration
	for i := range 5 {
		pod := testkit.NewTestNS(t, "weirt-p-")
		call := testkit.Call{Command: "ADD", ContainerID: fmt.Sprintf("warm-%d", i), Netns: pod.Path(),
			IfName: "eth0", Path: pluginDir, Conf: conf}
		start := time.Now()
		mustOK(t, "warm-up add", n.exec(call))
		ds = append(ds, time.Since(start))
		call.Command = "DEL"
		mustOK(t, "warm-up del", n.exec(call))
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// execCall runs one call in the node without failing the test from a
// worker goroutine.
func execCall(n *node, call testkit.Call) testkit.Outcome {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o, err := call.Exec(ctx, n.ns, weirBin())
	if err != nil {
		o.Err = &types.Error{Code: 999, Msg: err.Error()}
	}
	if o.Err == nil && o.ExitCode != 0 {
		o.Err = &types.Error{Code: 999, Msg: fmt.Sprintf("exit %d", o.ExitCode)}
	}
	return o
}

// addKilled starts ADD and kills the plugin with SIGKILL: after delay, or,
// with afterClaim, as soon as the store shows the container's address
// (the plugin is then between allocation and wiring). It reports whether
// the kill landed before the plugin finished.
func addKilled(call testkit.Call, delay time.Duration, afterClaim bool, n *node, store string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd, _, _ := call.Cmd(ctx, weirBin())
	if err := testkit.StartIn(n.ns, cmd); err != nil {
		return false, err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	if afterClaim {
		deadline := time.Now().Add(30 * time.Second)
	poll:
		for time.Now().Before(deadline) {
			select {
			case <-done:
				return false, nil
			default:
			}
			if claimed(store, call.ContainerID) {
				break poll
			}
			time.Sleep(100 * time.Microsecond)
		}
	} else {
		time.Sleep(delay)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, nil
}

// claimed reports whether the store holds an address for the container.
// It reads the layout without relying on more than this: address files are
// named by the address, and the holder is found either as a symlink target
// "containerID/ifname" or as a file whose name contains the container ID
// and shares the address file's inode.
func claimed(store, containerID string) bool {
	ents, err := os.ReadDir(store)
	if err != nil {
		return false
	}
	holders := map[uint64]bool{}
	var addrInodes []uint64
	for _, e := range ents {
		p := filepath.Join(store, e.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			if fi.Mode()&os.ModeSymlink != 0 {
				if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, containerID+"/") {
					return true
				}
				continue
			}
			addrInodes = append(addrInodes, st.Ino)
			continue
		}
		if strings.Contains(e.Name(), containerID) {
			holders[st.Ino] = true
		}
	}
	for _, ino := range addrInodes {
		if holders[ino] {
			return true
		}
	}
	return false
}
