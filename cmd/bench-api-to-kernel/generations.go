package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// generations tells when the kernel commits an nftables transaction in
// the node's namespace: it listens to the nftables multicast group, where
// each commit ends with a new-generation message. The bench reads the
// kernel once per commit instead of polling it, so that it does not load
// the two CPUs the agent, kube-apiserver and etcd share with it, and so
// that the time it takes is the commit's, not the next poll's.
//
// With a listener the kernel also builds a message for every object a
// commit changes: a cost the agent pays for a change of a few elements
// only while the bench measures, not during its full syncs.
type generations struct {
	conn *netlink.Conn
	// commits receives the time each commit's message arrived; when 64
	// wait, the oldest is dropped, so a reader that fell behind still
	// finds the latest.
	commits chan time.Time
	done    chan struct{}
}

// newGenerationType is the nfnetlink message type of NFT_MSG_NEWGEN.
const newGenerationType = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN)

// listenGenerations joins the nftables group in the namespace behind
// nsFd.
func listenGenerations(nsFd int) (*generations, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsFd})
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	// Asks for room for the messages of a full sync's commit that might
	// come while the bench measures (the kernel caps it at
	// net.core.rmem_max); an overrun (ENOBUFS) only makes await read the
	// kernel again.
	_ = conn.SetReadBuffer(8 << 20)
	if err := conn.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		conn.Close()
		return nil, fmt.Errorf("join the nftables group: %w", err)
	}
	g := &generations{conn: conn, commits: make(chan time.Time, 64), done: make(chan struct{})}
	go g.receive()
	return g, nil
}

func (g *generations) receive() {
	defer close(g.done)
	for {
		msgs, err := g.conn.Receive()
		now := time.Now()
		if errors.Is(err, unix.ENOBUFS) {
			g.notify(now) // messages were lost: have the kernel read again
			continue
		}
		if err != nil {
			return // closed
		}
		for _, m := range msgs {
			if m.Header.Type == newGenerationType {
				g.notify(now)
			}
		}
	}
}

// notify queues t, dropping the oldest time when 64 wait already (the
// reader reads the kernel once for all of them).
func (g *generations) notify(t time.Time) {
	for {
		select {
		case g.commits <- t:
			return
		default:
			select {
			case <-g.commits:
			default:
			}
		}
	}
}

// await waits until present reports want, reading it at once and then
// after each commit, or every fallback in case a commit's message is
// lost; it returns when the kernel had it: the arrival of the commit's
// message after which present first reported want, or of one that came
// during that read (the time of the first read when it already did), and
// never a time before since, when the change was written.
func (g *generations) await(ctx context.Context, present func() (bool, error), want bool, since time.Time, timeout, fallback time.Duration) (time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(fallback)
	defer tick.Stop()
	at := time.Now()
	for {
		got, err := present()
		if err != nil {
			return time.Time{}, err
		}
		if got == want {
			// A commit between the wake-up and the read made it.
			if at = latest(g.commits, at); at.Before(since) {
				at = time.Now()
			}
			return at, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("not in the kernel (present %v) after %v", want, timeout)
		case at = <-g.commits:
			at = latest(g.commits, at)
		case at = <-tick.C:
		}
	}
}

// latest drains c and returns the last time it held, or t when empty.
func latest(c <-chan time.Time, t time.Time) time.Time {
	for {
		select {
		case t = <-c:
		default:
			return t
		}
	}
}

func (g *generations) close() {
	_ = g.conn.Close()
	<-g.done
}
