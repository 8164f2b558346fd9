package kube

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// The main goroutine keeps the main thread, which the runtime never ends
// (a locked goroutine returning there wedges it instead): the goroutine
// below then runs on a thread that does end.
func init() { runtime.LockOSThread() }

// A child must outlive the thread that asked for it: Pdeathsig kills it
// when the thread that forked it ends, and a goroutine that locks its
// thread and returns ends that thread (as the datapath benchmark's pinned
// threads do). Here the asking goroutine is such a one.
func TestStartProcOutlivesTheCallersThread(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip(err)
	}
	type started struct {
		p   *proc
		err error
	}
	c := make(chan started, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		p, err := startProc("sleep", sleep, []string{"60"}, filepath.Join(t.TempDir(), "sleep.log"))
		c <- started{p, err}
	}()
	s := <-c
	if s.err != nil {
		t.Fatal(s.err)
	}
	defer s.p.kill()
	select {
	case <-s.p.done:
		t.Fatalf("the child died with the thread that started it: %v", s.p.err)
	case <-time.After(500 * time.Millisecond):
	}
}
