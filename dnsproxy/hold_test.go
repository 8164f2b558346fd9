package dnsproxy

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// packedQuery is a packed A query of name.
func packedQuery(t *testing.T, name string) []byte {
	t.Helper()
	b, err := new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fromZone is an exchange with a resolver answering from testZone.
func fromZone(t *testing.T) exchange {
	return func(_ context.Context, raw []byte) ([]byte, error) {
		q := new(dns.Msg)
		if err := q.Unpack(raw); err != nil {
			return nil, err
		}
		return zoneAnswer(t, q).Pack()
	}
}

// TestHoldUntilNewRules: an answer that comes while the proxy is held
// waits, counted, neither learned nor released; after SetRules and
// Release it is learned under the new rules, and only then released.
func TestHoldUntilNewRules(t *testing.T) {
	l := &fakeLearner{}
	p := newTestProxy(t, l)
	old := testRules()
	old[0].Pods = []netip.Addr{pod6} // pod4 is not the rule's yet
	if err := p.SetRules(old); err != nil {
		t.Fatal(err)
	}
	if err := p.Hold(context.Background()); err != nil {
		t.Fatal(err)
	}
	released := make(chan []call, 1) // what was learned when the answer went out
	done := make(chan bool, 1)
	go func() {
		done <- p.handle(context.Background(), "udp", pod4, packedQuery(t, "api.example.com"), fromZone(t),
			func([]byte) error { released <- l.take(); return nil })
	}()
	waitCount(t, "held answers", p.metrics.held, 1)
	if len(released) != 0 {
		t.Fatal("an answer was released while the proxy was held")
	}
	rs := testRules()
	rs[0].Set4 = "dns4-new"
	if err := p.SetRules(rs); err != nil {
		t.Fatal(err)
	}
	p.Release()
	if !<-done {
		t.Fatal("the held answer was dropped")
	}
	want := []call{{set: "dns4-new", pod: pod4, addr: ip("192.0.2.1"), ttl: 30 * time.Second}}
	if got := <-released; !callsEqual(got, want) {
		t.Errorf("learned before the release: %+v, want %+v", got, want)
	}
}

// TestHoldWaitsForAnswersUnderWay: Hold returns only once an answer being
// learned is written to its pod, or with an error, holding nothing, when
// its context ends first.
func TestHoldWaitsForAnswersUnderWay(t *testing.T) {
	for _, cancelled := range []bool{false, true} {
		l := &fakeLearner{entered: make(chan call, 1), release: make(chan struct{})}
		p := newTestProxy(t, l)
		released := make(chan struct{}, 1)
		done := make(chan bool, 1)
		go func() {
			done <- p.handle(context.Background(), "udp", pod4, packedQuery(t, "api.example.com"), fromZone(t),
				func([]byte) error { released <- struct{}{}; return nil })
		}()
		<-l.entered
		ctx, cancel := context.WithCancel(context.Background())
		held := make(chan error, 1)
		go func() { held <- p.Hold(ctx) }()
		if cancelled {
			cancel()
			if err := <-held; err == nil {
				t.Fatal("Hold held with an answer under way and its context ended")
			}
		} else {
			select {
			case err := <-held:
				t.Fatalf("Hold returned (%v) while an answer was being learned", err)
			case <-time.After(100 * time.Millisecond):
			}
		}
		close(l.release)
		if !<-done {
			t.Fatal("the answer under way was dropped")
		}
		if !cancelled {
			if err := <-held; err != nil || len(released) != 1 {
				t.Fatalf("Hold: %v, answer released %v", err, len(released) == 1)
			}
			p.Release()
		}
		cancel()
		l.entered, l.release = nil, nil
		if !p.handle(context.Background(), "udp", pod4, packedQuery(t, "api.example.com"), fromZone(t), func([]byte) error { return nil }) {
			t.Error("an answer after Release was dropped")
		}
		if got := testutil.ToFloat64(p.metrics.held); got != 0 {
			t.Errorf("cancelled %v: %v answers held, want 0", cancelled, got)
		}
	}
}

// TestHeldPastTimeout: an answer held until its upstream timeout ends is
// dropped, counted, neither learned nor released.
func TestHeldPastTimeout(t *testing.T) {
	l := &fakeLearner{}
	p := newTestProxy(t, l)
	if err := p.Hold(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the timeout has run out by the time the answer comes
	if p.handle(ctx, "udp", pod4, packedQuery(t, "api.example.com"), fromZone(t), func([]byte) error {
		t.Error("a held answer was released past its timeout")
		return nil
	}) {
		t.Error("a held answer was not dropped past its timeout")
	}
	if got := testutil.ToFloat64(p.metrics.dropped.WithLabelValues(dropHeld)); got != 1 {
		t.Errorf("dropped held: %v, want 1", got)
	}
	if got := l.take(); got != nil {
		t.Errorf("learned %+v from an answer held past its timeout", got)
	}
}
