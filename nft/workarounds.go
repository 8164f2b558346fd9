package nft

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file gathers weir's workarounds for github.com/google/nftables
// v0.3.0 (the version in go.mod), each pinned by a test in
// workarounds_test.go. Each says what upstream change would remove it;
// after upgrading the library, run those tests first: a workaround that is
// no longer needed, or no longer works, fails there.

// newEncoder returns a Conn that never touches a socket: Flush hands the
// whole batch (begin and end messages included) to capture.
//
// Workaround (the encoder hook): v0.3.0's Flush asks the kernel to
// acknowledge every message and to echo every new rule back (NLM_F_ECHO),
// and reads those replies one recvmsg at a time. For a table of 10k rules
// that is ≈ 35k replies: measured, the echoes alone cost the kernel ≈ 16 µs
// per rule and userspace ≈ 10 µs per rule to read. weir needs neither: it
// never uses rule handles, and the kernel reports a failing message whether
// or not it asked for an acknowledgement. So the applier queues messages on
// a Conn whose test dial function (WithTestDial, meant for tests) only
// captures the batch, and sends the batch itself on its own socket
// (sendBatch: no echo, one acknowledgement for the last message). Upstream,
// a Flush option that asks for neither (as nft does), or a way to take the
// encoded batch, would remove it.
func newEncoder(capture func([]netlink.Message)) (*nftables.Conn, error) {
	return nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req != nil {
			capture(req)
		}
		return nil, io.EOF // no replies: Flush returns without waiting
	}))
}

// patchTypeof gives the NEWSET messages of msgs that create a set of
// typeofs (the sets being added that are keyed by a rule id, by name: see
// NetlinkApplier.typeofs) that set's typeof user data (typeofUserdata), in
// place of the one google/nftables wrote.
//
// Workaround (the NEWSET user-data rewrite): v0.3.0 cannot declare a set by
// typeof: Set has no field for the expressions of its key, and AddSet
// writes only the key byte order, the merge flag and the comment as user
// data. nft needs the typeof record to print and parse the elements of a
// set whose key has no fixed-size type (a rule id). Upstream, a Set field
// holding the key's typeof expressions, written as
// NFTNL_UDATA_SET_KEY_TYPEOF the way nft writes it, would remove it.
func patchTypeof(msgs []netlink.Message, typeofs map[string][]byte) error {
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type&0xff != unix.NFT_MSG_NEWSET || len(m.Data) < 4 {
			continue
		}
		attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return fmt.Errorf("decode add set message: %w", err)
		}
		var ud []byte
		for _, a := range attrs {
			if a.Type == unix.NFTA_SET_NAME {
				ud = typeofs[string(bytes.TrimSuffix(a.Data, []byte{0}))]
			}
		}
		if ud == nil {
			continue
		}
		out := attrs[:0]
		for _, a := range attrs {
			if a.Type != unix.NFTA_SET_USERDATA {
				out = append(out, a)
			}
		}
		out = append(out, netlink.Attribute{Type: unix.NFTA_SET_USERDATA, Data: ud})
		data, err := netlink.MarshalAttributes(out)
		if err != nil {
			return fmt.Errorf("encode add set message: %w", err)
		}
		m.Data = append(m.Data[:4:4], data...)
		m.Header.Length = 0 // recomputed from Data when sent
	}
	return nil
}

// maxElemsPerMessage and maxElemListBytes bound the elements of one
// set-elements message: in number, and in the bytes of their encoding
// (elemSize).
//
// Workaround (the element-per-message cap): v0.3.0's SetAddElements and
// SetDeleteElements put every element in one message, under one nested
// attribute, and github.com/mdlayher/netlink writes an attribute's length
// into its 16-bit header field without a check: above 64 KiB the length
// wraps, the kernel reads a truncated list and the set is silently left
// partial. That is ≈ 4k elements of an IPv4 set, ≈ 1k of an interval set
// keyed by rule id and IPv6 address, ≈ 550 of a verdict map whose
// elements jump to chains of 80-character names. Upstream, splitting the
// list across messages as libnftnl does, and mdlayher/netlink refusing an
// attribute it cannot encode, would remove it.
const (
	maxElemsPerMessage = 1024
	maxElemListBytes   = math.MaxUint16 - 4 // the attribute's length counts its 4-byte header
)

// elemSize is the size of one element in the list google/nftables v0.3.0
// encodes (Set.makeElemList): its nested attribute, the key, the interval
// end flag, the key end, the verdict and its chain, each attribute a
// 4-byte header and its data padded to 4 bytes.
func elemSize(e nftables.SetElement) int {
	pad := func(n int) int { return (n + 3) &^ 3 }
	n := 4 + 8 + pad(len(e.Key)) // element; key: nested, value
	if e.IntervalEnd {
		n += 8 // flags
	}
	if len(e.KeyEnd) > 0 {
		n += 8 + pad(len(e.KeyEnd))
	}
	if e.VerdictData != nil {
		n += 4 + 4 + 8 // data, nested verdict, its code
		if e.VerdictData.Chain != "" {
			n += 4 + pad(len(e.VerdictData.Chain)+1)
		}
	}
	return n
}

// chunkElems splits els into messages within maxElemsPerMessage and
// maxElemListBytes, never splitting the start and end of one interval.
func chunkElems(els []nftables.SetElement) [][]nftables.SetElement {
	var out [][]nftables.SetElement
	for len(els) > 0 {
		n, size := 0, 0
		for n < len(els) && n < maxElemsPerMessage {
			size += elemSize(els[n])
			if n > 0 && size > maxElemListBytes {
				break
			}
			n++
		}
		if n < len(els) && els[n].IntervalEnd && n > 1 {
			n--
		}
		out = append(out, els[:n])
		els = els[n:]
	}
	return out
}

// openQuery opens the lasting google/nftables connection the applier's
// queries (Counters, Probe, RemoveTable) run on, and returns its socket.
//
// Workaround (the query socket): v0.3.0's queries take no context and its
// Conn does not expose its socket, so nothing would bound a query by the
// caller's deadline. The socket option hook (WithSockOptions), which runs
// on the lasting socket as New dials it, hands that socket over, and the
// applier sets its deadline from the context (query). Upstream, queries
// taking a context, or a deadline setter on Conn, would remove it.
func openQuery(opts ...nftables.ConnOption) (*nftables.Conn, *netlink.Conn, error) {
	var sock *netlink.Conn
	opts = append(opts, nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		sock = c
		return nil
	}))
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, nil, err
	}
	if sock == nil {
		return nil, nil, errors.Join(errors.New("google/nftables did not hand over its socket"), conn.CloseLasting())
	}
	return conn, sock, nil
}
