package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// where names the namespaces a command runs in: a node's (or the control
// plane's) network namespace and, for nodes, the mount namespace held by
// a holder process. The zero value is the harness's own.
type where struct {
	netns  string // name under /run/netns
	mntPid int    // holder of the mount namespace; 0: the harness's
}

// argv prefixes a command with the nsenter that puts it in w.
func (w where) argv(bin string, args ...string) []string {
	var out []string
	if w.netns != "" || w.mntPid != 0 {
		out = append(out, "nsenter")
		if w.netns != "" {
			out = append(out, "--net=/run/netns/"+w.netns)
		}
		if w.mntPid != 0 {
			out = append(out, fmt.Sprintf("--mount=/proc/%d/ns/mnt", w.mntPid))
		}
		out = append(out, "--")
	}
	return append(append(out, bin), args...)
}

// run runs a short command in w and returns its combined output.
func (w where) run(ctx context.Context, bin string, args ...string) (string, error) {
	a := w.argv(bin, args...)
	out, err := exec.CommandContext(ctx, a[0], a[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(a, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// start starts a long-running process in w, in a session of its own (it
// outlives the harness when the cluster is kept), appending its output to
// logDir/name.log, and records it in the state.
func (c *Cluster) start(name string, w where, env []string, bin string, args ...string) (Proc, error) {
	logPath := filepath.Join(c.LogDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Proc{}, fmt.Errorf("open %s log: %w", name, err)
	}
	defer f.Close()
	a := w.argv(bin, args...)
	cmd := exec.Command(a[0], a[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Proc{}, fmt.Errorf("start %s: %w", name, err)
	}
	p := Proc{Name: name, Pid: cmd.Process.Pid, Start: startTime(cmd.Process.Pid)}
	go cmd.Wait() //nolint:errcheck // reaped here; liveness is read from /proc
	if err := c.state.update(func(s *State) { s.Procs = append(s.Procs, p) }); err != nil {
		return p, err
	}
	c.logf("started %s (pid %d), log %s", name, p.Pid, logPath)
	return p, nil
}

// startTime returns field 22 of /proc/pid/stat (0 when the process is
// gone).
func startTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// alive reports whether p still runs (and is the same process).
func (p Proc) alive() bool {
	st := startTime(p.Pid)
	return st != 0 && (p.Start == 0 || st == p.Start) && !zombie(p.Pid)
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] == 'Z'
}

// stop sends SIGTERM to p's process group, then SIGKILL after grace.
func (p Proc) stop(grace time.Duration) error {
	if !p.alive() {
		return nil
	}
	_ = syscall.Kill(-p.Pid, syscall.SIGTERM)
	_ = syscall.Kill(p.Pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !p.alive() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	for i := 0; i < 100; i++ {
		if !p.alive() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s (pid %d) still runs after SIGKILL", p.Name, p.Pid)
}

// killAll SIGKILLs every pid until none is left alive (bounded).
func killAll(pids func() []int) error {
	for i := 0; i < 50; i++ {
		left := pids()
		if len(left) == 0 {
			return nil
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if left := pids(); len(left) > 0 {
		return fmt.Errorf("processes still alive after SIGKILL: %v", left)
	}
	return nil
}

// pidsInMountNS lists live processes whose mount namespace is the one
// holder pid is in (a node's containerd, shims and their children).
func pidsInMountNS(holder int) []int {
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", holder))
	if err != nil {
		return nil
	}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	if want == self {
		return nil // never the harness's own namespace
	}
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == holder || pid == os.Getpid() {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && l == want && !zombie(pid) {
			out = append(out, pid)
		}
	}
	return out
}

var errNotReady = errors.New("not ready")

// poll calls f every interval until it returns nil, ctx ends or timeout
// passes; the error names what was awaited and f's last error.
func poll(ctx context.Context, what string, timeout, interval time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = f(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}
