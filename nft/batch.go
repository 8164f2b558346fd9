package nft

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file touches the kernel: it sends the batches the applier builds.
//
// google/nftables encodes the messages, but its Flush asks the kernel to
// acknowledge every message and to echo every new rule back, and reads
// those replies one recvmsg at a time. For a table of 10k rules that is
// ≈ 35k replies: measured, the echoes alone cost the kernel ≈ 16 µs per
// rule and userspace ≈ 10 µs per rule to read. weir needs neither: it never
// uses rule handles, and the kernel reports a failing message whether or not
// it asked for an acknowledgement. So the applier queues messages on an
// encoder Conn whose dial function only captures the batch, and sends the
// batch itself: no echo, one acknowledgement for the last message.

// batchTimeout bounds the wait for the kernel's answer to one batch.
const batchTimeout = 2 * time.Minute

// newEncoder returns a Conn that never touches a socket: Flush hands the
// whole batch (begin and end messages included) to capture.
func newEncoder(capture func([]netlink.Message)) (*nftables.Conn, error) {
	return nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req != nil {
			capture(req)
		}
		return nil, io.EOF // no replies: Flush returns without waiting
	}))
}

// sendBatch sends msgs (a batch from the encoder: begin, messages, end) in
// one sendmsg and waits for the kernel's verdict. Only the last message
// before the batch end asks for an acknowledgement; the kernel answers it
// after it has processed (and committed or aborted) the whole batch, and
// sends an error for every message that failed before it. A commit failure
// and a refused batch are reported against the batch begin message.
func sendBatch(c *netlink.Conn, msgs []netlink.Message) error {
	if len(msgs) < 3 {
		return nil // begin and end only: nothing to do
	}
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
	if err := c.SetReadDeadline(time.Now().Add(batchTimeout)); err != nil {
		return fmt.Errorf("set read deadline: %w", err)
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
