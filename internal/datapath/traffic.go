package datapath

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The wire protocol on the test port: every connection starts with a msgSize
// message whose first byte says what the client measures.
const (
	msgSize      = 64
	modeConnect  = 'C' // server answers one message and closes
	modeLatency  = 'L' // server echoes every message until EOF
	modeStream   = 'T' // server counts bytes until EOF, answers the count
	streamChunk  = 128 << 10
	warmupEchoes = 200
)

// Server serves the benchmark protocol on one pinned thread.
type Server struct {
	stop atomic.Bool
	done chan error
	// failed counts connections that ended in an error (the client sees
	// and reports its own side).
	failed atomic.Int64
}

// StartServer listens on port in the namespace at nsPath, on a thread
// pinned to cpu.
func StartServer(nsPath string, port, cpu int) (*Server, error) {
	s := &Server{done: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := enter(nsPath, cpu, func() error {
			lfd, err := listen(port, 100*time.Millisecond)
			ready <- err
			if err != nil {
				return err
			}
			defer unix.Close(lfd)
			s.serve(lfd)
			return nil
		})
		select {
		case ready <- err: // enter failed before listening
		default:
		}
		s.done <- err
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("benchmark server: %w", err)
	}
	return s, nil
}

// Close stops the server and waits for its thread.
func (s *Server) Close() error {
	s.stop.Store(true)
	return <-s.done
}

func (s *Server) serve(lfd int) {
	buf := make([]byte, streamChunk)
	for !s.stop.Load() {
		fd, ok, err := accept(lfd)
		if err != nil {
			s.failed.Add(1)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !ok {
			continue
		}
		if err := handle(fd, buf); err != nil {
			s.failed.Add(1)
		}
		unix.Close(fd)
	}
}

func handle(fd int, buf []byte) error {
	if err := setTimeouts(fd, ioTimeout); err != nil {
		return err
	}
	msg := buf[:msgSize]
	if err := readFull(fd, msg); err != nil {
		return err
	}
	switch msg[0] {
	case modeConnect:
		return writeAll(fd, msg)
	case modeLatency:
		for {
			if err := writeAll(fd, msg); err != nil {
				return err
			}
			n, err := read(fd, msg[:1])
			if err != nil || n == 0 {
				return err
			}
			if err := readFull(fd, msg[1:]); err != nil {
				return err
			}
		}
	case modeStream:
		total := uint64(msgSize)
		for {
			n, err := read(fd, buf)
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
			total += uint64(n)
		}
		return writeAll(fd, binary.BigEndian.AppendUint64(nil, total))
	}
	return fmt.Errorf("unknown mode %q", msg[0])
}

// Client runs measurements from the client pod on a pinned thread.
type Client struct {
	NSPath string
	CPU    int
	Dst    netip.Addr
	Port   int
}

// onConn runs f on one new connection to the server, from a thread
// pinned to the client's CPU in its namespace, and closes it after.
func (c Client) onConn(f func(fd int) error) error {
	return pinned(c.NSPath, c.CPU, func() error {
		fd, err := dial(c.Dst, c.Port)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return f(fd)
	})
}

// Stream sends as much as it can for d on one connection and returns
// the goodput in Gbit/s, as counted by the server.
func (c Client) Stream(ctx context.Context, d time.Duration) (float64, error) {
	var gbps float64
	err := c.onConn(func(fd int) error {
		buf := make([]byte, streamChunk)
		buf[0] = modeStream
		start := time.Now()
		end := start.Add(d)
		for i := 0; time.Now().Before(end); i++ {
			if i%64 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if err := writeAll(fd, buf); err != nil {
				return err
			}
			buf[0] = 0
		}
		if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
		var count [8]byte
		if err := readFull(fd, count[:]); err != nil {
			return fmt.Errorf("stream result: %w", err)
		}
		gbps = float64(binary.BigEndian.Uint64(count[:])) * 8 / time.Since(start).Seconds() / 1e9
		return nil
	})
	return gbps, err
}

// Latency bounces one msgSize message back and forth on one connection for
// d and returns the round-trip times, sorted, without the first ones
// (warm-up: up to warmupEchoes, at most a quarter).
func (c Client) Latency(ctx context.Context, d time.Duration) ([]time.Duration, error) {
	rtts := make([]time.Duration, 0, 1<<16)
	err := c.onConn(func(fd int) error {
		msg := make([]byte, msgSize)
		msg[0] = modeLatency
		if err := writeAll(fd, msg); err != nil {
			return err
		}
		if err := readFull(fd, msg); err != nil {
			return err
		}
		end := time.Now().Add(d)
		for i := 0; ; i++ {
			t0 := time.Now()
			if t0.After(end) {
				return nil
			}
			if i%256 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if err := writeAll(fd, msg); err != nil {
				return err
			}
			if err := readFull(fd, msg); err != nil {
				return err
			}
			rtts = append(rtts, time.Since(t0))
		}
	})
	if err == nil && len(rtts) == 0 {
		err = errors.New("no round trip completed")
	}
	rtts = rtts[min(warmupEchoes, len(rtts)/4):]
	slices.Sort(rtts)
	return rtts, err
}

// ConnRate opens connections one after the other for d, each carrying one
// request and its response, closed by the server first (HTTP/1.0 style, so
// TIME_WAIT stays on the server and the client never runs out of ports),
// and returns connections per second.
func (c Client) ConnRate(ctx context.Context, d time.Duration) (float64, error) {
	var rate float64
	err := pinned(c.NSPath, c.CPU, func() error {
		msg := make([]byte, msgSize)
		start := time.Now()
		end := start.Add(d)
		n := 0
		for ; time.Now().Before(end); n++ {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := c.oneRequest(msg); err != nil {
				return fmt.Errorf("connection %d: %w", n, err)
			}
		}
		rate = float64(n) / time.Since(start).Seconds()
		return nil
	})
	return rate, err
}

// Request makes one connection carrying one request and its response.
func (c Client) Request() error {
	return pinned(c.NSPath, c.CPU, func() error { return c.oneRequest(make([]byte, msgSize)) })
}

func (c Client) oneRequest(msg []byte) error {
	fd, err := dial(c.Dst, c.Port)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	msg[0] = modeConnect
	if err := writeAll(fd, msg); err != nil {
		return err
	}
	if err := readFull(fd, msg); err != nil {
		return err
	}
	if n, err := read(fd, msg[:1]); err != nil || n != 0 {
		return fmt.Errorf("wait for the server's close: %d bytes, %v", n, err)
	}
	return nil
}

// percentile of sorted values, p in [0, 1].
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(p*float64(len(sorted)-1)+0.5)]
}
