package nft

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/ruleset"
)

// recorder is a batchConn that keeps the batches sent on it and answers
// each as the kernel does: an error for the message refuse picks, then,
// unless that was the batch begin or its last message, the acknowledgement
// of the last message (see sendBatch).
type recorder struct {
	batches [][]netlink.Message
	// answers describes the answer to each batch, for the golden files.
	answers []string
	// refuse, when set, says which message of batch n (from 1) the kernel
	// refuses and why; 0 for none (the batch begin is never refused).
	refuse    func(n int) (int, unix.Errno)
	deadlines []time.Time
	seq       uint32
	replies   []reply
}

type reply struct {
	msgs []netlink.Message
	err  error
}

func (r *recorder) SendMessages(msgs []netlink.Message) ([]netlink.Message, error) {
	sent := make([]netlink.Message, len(msgs))
	for i, m := range msgs {
		r.seq++
		m.Header.Sequence = r.seq
		sent[i] = m
	}
	r.batches = append(r.batches, sent)
	last := len(sent) - 2
	bad, errno := 0, unix.Errno(0)
	if r.refuse != nil {
		bad, errno = r.refuse(len(r.batches))
	}
	answer := "acknowledged"
	if bad != 0 {
		answer = fmt.Sprintf("message %d refused: %v", bad, errno)
		r.replies = append(r.replies, reply{err: &netlink.OpError{Op: "receive", Err: errno, Sequence: sent[bad].Header.Sequence}})
	}
	if bad != last { // none refused, or one before the last: the last is acknowledged
		r.replies = append(r.replies, reply{msgs: []netlink.Message{{
			Header: netlink.Header{Type: netlink.Error, Sequence: sent[last].Header.Sequence},
			Data:   make([]byte, 4), // errno 0
		}}})
	}
	r.answers = append(r.answers, answer)
	return sent, nil
}

func (r *recorder) Receive() ([]netlink.Message, error) {
	if len(r.replies) == 0 {
		return nil, errors.New("recorder: read with no answer pending")
	}
	next := r.replies[0]
	r.replies = r.replies[1:]
	return next.msgs, next.err
}

func (r *recorder) SetDeadline(t time.Time) error {
	r.deadlines = append(r.deadlines, t)
	return nil
}

func (r *recorder) Close() error { return nil }

// recordingApplier is an applier whose batches r keeps: no socket, no root.
func recordingApplier(t *testing.T, r *recorder) *NetlinkApplier {
	t.Helper()
	a, err := newApplier(-1, r)
	if err != nil {
		t.Fatal(err)
	}
	a.learned = func(context.Context, []ruleset.Set) (map[string][]nftables.SetElement, error) {
		t.Error("the recording applier read the kernel's learned elements")
		return nil, nil
	}
	return a
}

// messageTypes are the nf_tables message types, as the kernel names them.
var messageTypes = map[uint16]string{
	unix.NFT_MSG_NEWTABLE: "NEWTABLE", unix.NFT_MSG_DELTABLE: "DELTABLE",
	unix.NFT_MSG_NEWCHAIN: "NEWCHAIN", unix.NFT_MSG_DELCHAIN: "DELCHAIN",
	unix.NFT_MSG_NEWRULE: "NEWRULE", unix.NFT_MSG_DELRULE: "DELRULE",
	unix.NFT_MSG_NEWSET: "NEWSET", unix.NFT_MSG_DELSET: "DELSET",
	unix.NFT_MSG_NEWSETELEM: "NEWSETELEM", unix.NFT_MSG_DELSETELEM: "DELSETELEM",
	unix.NFT_MSG_NEWOBJ: "NEWOBJ", unix.NFT_MSG_DELOBJ: "DELOBJ",
}

// describeBatches prints the batches of r, one message a line: its type,
// the object it names, what matters of its content (a base chain, the
// expressions of a rule, a typeof set, the elements of a set message) and
// whether it asks for an acknowledgement or an echo.
func describeBatches(t *testing.T, r *recorder, from int) string {
	t.Helper()
	var b strings.Builder
	for n := from; n < len(r.batches); n++ {
		fmt.Fprintf(&b, "batch %d: %s\n", n+1-from, r.answers[n])
		for _, m := range r.batches[n] {
			fmt.Fprintf(&b, "  %s\n", describeMessage(t, m))
		}
	}
	return b.String()
}

func describeMessage(t *testing.T, m netlink.Message) string {
	t.Helper()
	var line string
	switch m.Header.Type {
	case unix.NFNL_MSG_BATCH_BEGIN:
		line = "BEGIN"
	case unix.NFNL_MSG_BATCH_END:
		line = "END"
	default:
		typ := uint16(m.Header.Type & 0xff)
		line = messageTypes[typ]
		if line == "" {
			line = fmt.Sprintf("type %d", typ)
		}
		line += " " + messageContent(t, typ, attributes(t, m))
	}
	if m.Header.Flags&netlink.Acknowledge != 0 {
		line += " [ack]"
	}
	if m.Header.Flags&unix.NLM_F_ECHO != 0 {
		line += " [echo]"
	}
	return line
}

// messageContent describes the attributes of a message of type typ.
func messageContent(t *testing.T, typ uint16, attrs map[uint16][]byte) string {
	t.Helper()
	switch typ {
	case unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE:
		return str(attrs[unix.NFTA_TABLE_NAME])
	case unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN:
		s := str(attrs[unix.NFTA_CHAIN_NAME])
		if attrs[unix.NFTA_CHAIN_HOOK] != nil {
			s += " (base)"
		}
		return s
	case unix.NFT_MSG_NEWRULE:
		return fmt.Sprintf("%s (%d expressions)", str(attrs[unix.NFTA_RULE_CHAIN]), nested(t, attrs[unix.NFTA_RULE_EXPRESSIONS]))
	case unix.NFT_MSG_DELRULE:
		return str(attrs[unix.NFTA_RULE_CHAIN]) + " (all rules)"
	case unix.NFT_MSG_NEWSET:
		return str(attrs[unix.NFTA_SET_NAME]) + setNotes(t, attrs)
	case unix.NFT_MSG_DELSET:
		return str(attrs[unix.NFTA_SET_NAME])
	case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
		return fmt.Sprintf("%s (%d elements%s)", str(attrs[unix.NFTA_SET_ELEM_LIST_SET]), nested(t, attrs[unix.NFTA_SET_ELEM_LIST_ELEMENTS]),
			elemTimeouts(t, attrs[unix.NFTA_SET_ELEM_LIST_ELEMENTS]))
	case unix.NFT_MSG_NEWOBJ, unix.NFT_MSG_DELOBJ:
		return str(attrs[unix.NFTA_OBJ_NAME])
	}
	return ""
}

// setNotes describes what a NEWSET declares beyond its name, when it
// does: a typeof key, element timeouts, a size.
func setNotes(t *testing.T, attrs map[uint16][]byte) string {
	t.Helper()
	var notes []string
	if userdata.Get(attrs[unix.NFTA_SET_USERDATA], userdata.NFTNL_UDATA_SET_KEY_TYPEOF) != nil {
		notes = append(notes, "typeof")
	}
	if f := attrs[unix.NFTA_SET_FLAGS]; len(f) == 4 && binary.BigEndian.Uint32(f)&unix.NFT_SET_TIMEOUT != 0 {
		notes = append(notes, "timeout")
	}
	if desc := attrs[unix.NFTA_SET_DESC]; desc != nil {
		for typ, v := range decode(t, desc) {
			if typ == unix.NFTA_SET_DESC_SIZE {
				notes = append(notes, fmt.Sprint("size ", binary.BigEndian.Uint32(v)))
			}
		}
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, ", ") + ")"
}

// elemTimeouts lists the timeouts of the elements of a list, when one
// has any: "-" for an element without.
func elemTimeouts(t *testing.T, list []byte) string {
	t.Helper()
	attrs, err := netlink.UnmarshalAttributes(list)
	if err != nil {
		t.Fatalf("decode elements: %v", err)
	}
	var out []string
	any := false
	for _, a := range attrs {
		timeout := "-"
		if v := decode(t, a.Data)[unix.NFTA_SET_ELEM_TIMEOUT]; v != nil {
			timeout, any = (time.Duration(binary.BigEndian.Uint64(v)) * time.Millisecond).String(), true
		}
		out = append(out, timeout)
	}
	if !any {
		return ""
	}
	return ", timeouts " + strings.Join(out, " ")
}

// decode decodes nested attributes by type.
func decode(t *testing.T, b []byte) map[uint16][]byte {
	t.Helper()
	attrs, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		t.Fatalf("decode nested attributes: %v", err)
	}
	out := map[uint16][]byte{}
	for _, a := range attrs {
		out[a.Type&^unix.NLA_F_NESTED] = a.Data
	}
	return out
}

// attributes decodes the attributes of an nf_tables message (after its
// 4-byte nfgenmsg header), by type.
func attributes(t *testing.T, m netlink.Message) map[uint16][]byte {
	t.Helper()
	return decode(t, m.Data[4:])
}

// nested counts the attributes nested in b.
func nested(t *testing.T, b []byte) int {
	t.Helper()
	attrs, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		t.Fatalf("decode nested attributes: %v", err)
	}
	return len(attrs)
}

func str(b []byte) string { return string(bytes.TrimSuffix(b, []byte{0})) }
