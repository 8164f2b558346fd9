package nft

import (
	"context"
	"testing"
	"time"

	"github.com/mdlayher/netlink"

	"github.com/weir-cni/weir/internal/synth"
	"github.com/weir-cni/weir/policy"
)

// sink is a batchConn that encodes each batch as the kernel's socket does
// and acknowledges its last message, keeping nothing.
type sink struct {
	sock batchSocket
	ack  netlink.Message
}

func (s *sink) SendMessages(msgs []netlink.Message) ([]netlink.Message, error) {
	_ = s.sock.marshal(msgs)
	s.ack = netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: msgs[len(msgs)-2].Header.Sequence}, Data: make([]byte, 4)}
	return msgs, nil
}

func (s *sink) Receive() ([]netlink.Message, error) { return []netlink.Message{s.ack}, nil }
func (s *sink) SetDeadline(time.Time) error         { return nil }
func (s *sink) Close() error                        { return nil }

// BenchmarkEncodeFullDense is the userspace half of the apply of
// BenchmarkFullSyncDense: the dense cluster's full-sync batch encoded and
// marshalled, no kernel.
func BenchmarkEncodeFullDense(b *testing.B) {
	r := policy.Compile(synth.Cluster(synth.Dense))
	a, err := newApplier(-1, &sink{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := a.ApplyFull(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
}
