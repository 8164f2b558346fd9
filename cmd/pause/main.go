// Command pause is the sandbox container of a pod, the image
// registry.k8s.io/pause is built from: as PID 1 it holds the pod's
// namespaces open by waiting until SIGINT or SIGTERM, then exits 0, and it
// reaps the zombies of processes that share its PID namespace. It uses the
// standard library only; build it with CGO_ENABLED=0 so it is static.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(run(func() {})) }

// run waits for SIGINT or SIGTERM, reaping children on every SIGCHLD, and
// returns the exit code. ready is called once the signals are caught.
func run(ready func()) int {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not PID 1, zombies of other processes are not reaped")
	}
	// Separate channels so a pending SIGCHLD never crowds out SIGTERM; one
	// pending SIGCHLD is enough, as reap collects every exited child.
	stop := make(chan os.Signal, 1)
	child := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	signal.Notify(child, syscall.SIGCHLD)
	ready()
	for {
		select {
		case <-stop:
			return 0
		case <-child:
			reap()
		}
	}
}

// reap collects every child that has exited, without blocking.
func reap() {
	for {
		pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return // ECHILD: no children; 0: none exited yet
		}
	}
}
