package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// This file runs code on OS threads pinned to one CPU inside a pod's
// network namespace, and does blocking socket I/O with plain syscalls: no
// Go netpoller between the kernel and the measurement.

// pinned runs f on a fresh OS thread that has joined the network namespace
// at nsPath and is pinned to cpu, and returns f's error. The thread is
// never unlocked, so the Go runtime ends it when f returns: no other
// goroutine ever runs in the pod's namespace.
func pinned(nsPath string, cpu int, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- enter(nsPath, cpu, f)
	}()
	return <-errc
}

func enter(nsPath string, cpu int, f func() error) error {
	fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	err = unix.Setns(fd, unix.CLONE_NEWNET)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("enter netns %s: %w", nsPath, err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin thread to cpu %d: %w", cpu, err)
	}
	return f()
}

// ioTimeout bounds every blocking socket call.
const ioTimeout = 3 * time.Second

func setTimeouts(fd int, d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	return errors.Join(
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv),
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv))
}

// listen opens a blocking TCP listener on port of every IPv4 address;
// accept gives up after acceptWait so the caller can look at its stop flag.
func listen(port int, acceptWait time.Duration) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	err = errors.Join(
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
		setTimeouts(fd, acceptWait),
		unix.Bind(fd, &unix.SockaddrInet4{Port: port}),
		unix.Listen(fd, 1024))
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen on port %d: %w", port, err)
	}
	return fd, nil
}

// dial connects a blocking TCP socket to dst:port.
func dial(dst netip.Addr, port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := errors.Join(setTimeouts(fd, ioTimeout), unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("socket options: %w", err)
	}
	if err := connect(fd, &unix.SockaddrInet4{Addr: dst.As4(), Port: port}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s port %d: %w", dst, port, err)
	}
	return fd, nil
}

// connect is a blocking connect that survives EINTR: the connection goes
// on in the background, so wait for it and read its outcome.
func connect(fd int, sa unix.Sockaddr) error {
	err := unix.Connect(fd, sa)
	if !errors.Is(err, unix.EINTR) {
		return err
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		n, err := unix.Poll(pfd, int(ioTimeout.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.ETIMEDOUT
		}
		break
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if soerr != 0 {
		return unix.Errno(soerr)
	}
	return nil
}

// accept waits for a connection; ok is false when the wait timed out.
func accept(lfd int) (fd int, ok bool, err error) {
	for {
		fd, _, err = unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return -1, false, nil
		case err != nil:
			return -1, false, fmt.Errorf("accept: %w", err)
		}
		return fd, true, nil
	}
}

// readFull reads exactly len(b) bytes.
func readFull(fd int, b []byte) error {
	for got := 0; got < len(b); {
		n, err := unix.Read(fd, b[got:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("read: unexpected EOF after %d of %d bytes", got, len(b))
		}
		got += n
	}
	return nil
}

// read is one read that retries EINTR; 0 bytes means EOF.
func read(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read: %w", err)
		}
		return n, nil
	}
}

// writeAll writes all of b.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}
