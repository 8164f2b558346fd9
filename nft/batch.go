package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file touches the kernel: it sends the batches the applier builds on
// weir's own netlink socket (see newEncoder in workarounds.go for why not
// google/nftables' Flush), and bounds the wait by the caller's context.

// batchConn is the socket batches are sent on: *netlink.Conn in the
// kernel, a recorder in the tests, which capture the batches and answer
// them as the kernel would.
type batchConn interface {
	SendMessages(msgs []netlink.Message) ([]netlink.Message, error)
	Receive() ([]netlink.Message, error)
	SetDeadline(t time.Time) error
	Close() error
}

// dialBatchConn opens the netlink socket batches are sent on, in the
// network namespace of fd (-1: the caller's).
func dialBatchConn(fd int) (*batchSocket, error) {
	cfg := &netlink.Config{}
	if fd >= 0 {
		cfg.NetNS = fd
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	if err := bigBuffers(c); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("netlink socket: %w", err), c.Close())
	}
	return &batchSocket{Conn: c, raw: raw, seq: uint32(time.Now().Unix())}, nil
}

// batchSocket is the kernel's batchConn: a netlink.Conn whose SendMessages
// writes the batch into one buffer of its exact size. netlink.Conn's
// encodes each message into a buffer of its own, then appends it to a
// buffer growing by doubling: for a batch of tens of megabytes that is
// three times the batch in garbage, and as many bytes copied.
type batchSocket struct {
	*netlink.Conn
	raw syscall.RawConn
	seq uint32 // the last sequence number given
}

// SendMessages gives each message its length and, unless it has one, a
// sequence number, and sends them all in one sendmsg. It returns msgs so
// updated, as netlink.Conn's does.
func (s *batchSocket) SendMessages(msgs []netlink.Message) ([]netlink.Message, error) {
	buf := s.marshal(msgs)
	var serr error
	err := s.raw.Write(func(fd uintptr) bool {
		_, serr = unix.SendmsgN(int(fd), buf, nil, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}, 0)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("sendmsg: %w", err)
	}
	return msgs, nil
}

// marshal numbers msgs as SendMessages does and encodes them into one
// buffer of their exact size, each as netlink.Message.MarshalBinary would.
func (s *batchSocket) marshal(msgs []netlink.Message) []byte {
	size := 0
	for i := range msgs {
		h := &msgs[i].Header
		h.Length = uint32(nlmsgAlign(unix.NLMSG_HDRLEN + len(msgs[i].Data)))
		if h.Sequence == 0 {
			s.seq++
			h.Sequence = s.seq
		}
		size += int(h.Length)
	}
	buf := make([]byte, size)
	off := 0
	for _, m := range msgs {
		binary.NativeEndian.PutUint32(buf[off:], m.Header.Length)
		binary.NativeEndian.PutUint16(buf[off+4:], uint16(m.Header.Type))
		binary.NativeEndian.PutUint16(buf[off+6:], uint16(m.Header.Flags))
		binary.NativeEndian.PutUint32(buf[off+8:], m.Header.Sequence)
		binary.NativeEndian.PutUint32(buf[off+12:], m.Header.PID)
		copy(buf[off+unix.NLMSG_HDRLEN:], m.Data)
		off += int(m.Header.Length)
	}
	return buf
}

// nlmsgAlign rounds n up to the netlink alignment (NLMSG_ALIGN).
func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// socketBuffer is the netlink socket buffer size, both ways. A full sync of
// a large cluster is one batch of several megabytes, sent in one sendmsg,
// and the kernel refuses a message larger than the send buffer (EMSGSIZE);
// the acks of every message of the batch must fit the receive buffer. Like
// nft, weir forces the size (root may exceed net.core.[rw]mem_max).
const socketBuffer = 64 << 20

func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], socketBuffer); e != nil {
				if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], socketBuffer); e != nil {
					serr = fmt.Errorf("set netlink socket buffer: %w", e)
				}
			}
		}
	})
	if err != nil {
		return fmt.Errorf("netlink socket control: %w", err)
	}
	return serr
}

// deadliner is a socket whose blocking calls a deadline ends.
type deadliner interface {
	SetDeadline(t time.Time) error
}

// bound makes ctx bound c's blocking calls until release is called: c's
// deadline becomes ctx's, and ctx's cancellation ends a call at once.
// release clears the deadline again. The caller checks ctx.Err() first.
func bound(ctx context.Context, c deadliner) (release func(), err error) {
	deadline, _ := ctx.Deadline() // zero: none
	if err := c.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set netlink deadline: %w", err)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = c.SetDeadline(time.Unix(1, 0)) // in the past
	})
	return func() {
		if !stop() {
			<-fired // the cancellation's deadline must not outlive release
		}
		_ = c.SetDeadline(time.Time{})
	}, nil
}

// withContext wraps err, from a call ctx bounded, with ctx's own error
// when ctx ended it: errors.Is then finds context.DeadlineExceeded or
// context.Canceled.
func withContext(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return errors.Join(err, ctx.Err())
	}
	return err
}

// sendBatch sends msgs (a batch from the encoder: begin, messages, end) in
// one sendmsg and waits for the kernel's verdict, within ctx. Only the last
// message before the batch end asks for an acknowledgement; the kernel
// answers it after it has processed (and committed or aborted) the whole
// batch, and sends an error for every message that failed before it. A
// commit failure and a refused batch are reported against the batch begin
// message.
func sendBatch(ctx context.Context, c batchConn, msgs []netlink.Message) error {
	if len(msgs) < 3 {
		return nil // begin and end only: nothing to do
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	release, err := bound(ctx, c)
	if err != nil {
		return err
	}
	defer release()
	return withContext(ctx, exchange(c, msgs))
}

// exchange sends a batch and reads the kernel's answers (see sendBatch).
func exchange(c batchConn, msgs []netlink.Message) error {
	last := len(msgs) - 2
	for i := range msgs {
		h := &msgs[i].Header
		h.Flags &^= netlink.Acknowledge | unix.NLM_F_ECHO
		if i == last {
			h.Flags |= netlink.Acknowledge
		}
	}
	sent, err := c.SendMessages(msgs)
	if err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	begin := sent[0].Header.Sequence
	index := func(seq uint32) (int, bool) { // position in the batch; false for an old batch's reply
		i := int(seq - begin)
		return i, seq-begin < uint32(len(sent))
	}
	var errs []error
	for {
		replies, err := c.Receive()
		var oe *netlink.OpError
		if errors.As(err, &oe) && oe.Sequence != 0 {
			i, ours := index(oe.Sequence)
			if !ours {
				continue
			}
			errs = append(errs, fmt.Errorf("%s: %w", describe(msgs, i), oe.Err))
			if i == 0 || i == last {
				return errors.Join(errs...)
			}
			continue
		}
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("receive batch answer: %w", err))...)
		}
		for _, m := range replies {
			if i, ours := index(m.Header.Sequence); ours && i == last && m.Header.Type == netlink.Error {
				return errors.Join(errs...)
			}
		}
	}
}

// messageNames names the nf_tables message types a batch holds.
var messageNames = map[uint16]string{
	unix.NFT_MSG_NEWTABLE:   "add table",
	unix.NFT_MSG_DELTABLE:   "delete table",
	unix.NFT_MSG_NEWCHAIN:   "add chain",
	unix.NFT_MSG_DELCHAIN:   "delete chain",
	unix.NFT_MSG_NEWRULE:    "add rule",
	unix.NFT_MSG_DELRULE:    "flush chain",
	unix.NFT_MSG_NEWSET:     "add set",
	unix.NFT_MSG_DELSET:     "delete set",
	unix.NFT_MSG_NEWSETELEM: "add set elements",
	unix.NFT_MSG_DELSETELEM: "delete set elements",
	unix.NFT_MSG_NEWOBJ:     "add counter",
	unix.NFT_MSG_DELOBJ:     "delete counter",
}

// describe names message i of a batch for an error: its position and type.
func describe(msgs []netlink.Message, i int) string {
	if i == 0 {
		return "batch"
	}
	typ := uint16(msgs[i].Header.Type & 0xff)
	name, ok := messageNames[typ]
	if !ok {
		name = fmt.Sprintf("type %d", typ)
	}
	return fmt.Sprintf("message %d of %d (%s)", i, len(msgs)-2, name)
}
