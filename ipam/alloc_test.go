package ipam

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weir-cni/weir/conf"
)

// rng builds a range "subnet[,start,end]"; without start/end it spans the
// whole subnet like conf does (network and IPv4 broadcast excluded).
func rng(_ testing.TB, s string) conf.Range { return mkRange(s) }

func mkRange(s string) conf.Range {
	parts := strings.Split(s, ",")
	p := netip.MustParsePrefix(parts[0])
	r := conf.Range{Subnet: p, Start: p.Addr().Next(), End: lastOf(p)}
	if p.Addr().Is4() && p.Bits() < 31 {
		r.End = r.End.Prev()
	}
	if p.Bits() >= p.Addr().BitLen()-1 {
		r.Start = p.Addr()
	}
	if len(parts) == 3 {
		r.Start, r.End = netip.MustParseAddr(parts[1]), netip.MustParseAddr(parts[2])
	}
	return r
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - uint(i%8))
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func rngs(t testing.TB, ss ...string) []conf.Range {
	var out []conf.Range
	for _, s := range ss {
		out = append(out, rng(t, s))
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

var (
	podA = Attachment{ContainerID: "aaa", IfName: "eth0"}
	podB = Attachment{ContainerID: "bbb", IfName: "eth0"}
	podC = Attachment{ContainerID: "ccc", IfName: "eth0"}
)

// seeded returns an IPAM over a memory store holding held and last.
func seeded(t *testing.T, held map[string]Attachment, last map[string]string) *IPAM {
	t.Helper()
	s := NewMemStore()
	for ip, a := range held {
		if err := s.Claim(netip.MustParseAddr(ip), a); err != nil {
			t.Fatal(err)
		}
	}
	l := map[string]netip.Addr{}
	for k, v := range last {
		l[k] = netip.MustParseAddr(v)
	}
	if err := s.SetLastReserved(l); err != nil {
		t.Fatal(err)
	}
	return New(s)
}

func TestAllocate(t *testing.T) {
	tests := []struct {
		name      string
		ranges    []string
		held      map[string]Attachment
		last      map[string]string
		att       Attachment
		requested []string
		want      []string
		wantErr   error
	}{
		{name: "ipv4 starts at the first usable address",
			ranges: []string{"10.0.0.0/24"}, att: podA, want: []string{"10.0.0.1"}},
		{name: "ipv6 starts at the first address after the subnet address",
			ranges: []string{"fd00::/120"}, att: podA, want: []string{"fd00::1"}},
		{name: "dual-stack gives one address per family in range order",
			ranges: []string{"fd00::/64", "10.0.0.0/24"}, att: podA, want: []string{"fd00::1", "10.0.0.1"}},
		{name: "several ranges of one family still give one address",
			ranges: []string{"10.0.0.0/24", "10.0.1.0/24"}, att: podA, want: []string{"10.0.0.1"}},
		{name: "reserved addresses are skipped",
			ranges: []string{"10.0.0.0/24"}, held: map[string]Attachment{"10.0.0.1": podB, "10.0.0.2": podC},
			att: podA, want: []string{"10.0.0.3"}},
		{name: "rangeStart and rangeEnd bound the choice",
			ranges: []string{"10.0.0.0/24,10.0.0.10,10.0.0.12"}, held: map[string]Attachment{"10.0.0.10": podB},
			att: podA, want: []string{"10.0.0.11"}},
		{name: "a /32 range holds exactly its one address",
			ranges: []string{"10.0.0.7/32"}, att: podA, want: []string{"10.0.0.7"}},
		{name: "a full /32 range is exhausted",
			ranges: []string{"10.0.0.7/32"}, held: map[string]Attachment{"10.0.0.7": podB},
			att: podA, wantErr: ErrExhausted},
		{name: "a /31 range uses both addresses",
			ranges: []string{"10.0.0.0/31"}, held: map[string]Attachment{"10.0.0.0": podB},
			att: podA, want: []string{"10.0.0.1"}},
		{name: "a /128 range holds exactly its one address",
			ranges: []string{"fd00::9/128"}, att: podA, want: []string{"fd00::9"}},
		{name: "the next range of a family is used when the first is full",
			ranges: []string{"10.0.0.0/24,10.0.0.1,10.0.0.2", "10.0.1.0/24"},
			held:   map[string]Attachment{"10.0.0.1": podB, "10.0.0.2": podC},
			att:    podA, want: []string{"10.0.1.1"}},
		{name: "every range of the family full is exhausted",
			ranges: []string{"10.0.0.0/31", "10.0.1.0/31"},
			held: map[string]Attachment{"10.0.0.0": podB, "10.0.0.1": podB,
				"10.0.1.0": podC, "10.0.1.1": podC},
			att: podA, wantErr: ErrExhausted},
		{name: "exhausted ipv6 leaves no ipv4 reserved",
			ranges: []string{"10.0.0.0/24", "fd00::5/128"}, held: map[string]Attachment{"fd00::5": podB},
			att: podA, wantErr: ErrExhausted},
		{name: "round-robin continues after the last reserved address",
			ranges: []string{"10.0.0.0/24"}, last: map[string]string{"10.0.0.1-10.0.0.254": "10.0.0.5"},
			att: podA, want: []string{"10.0.0.6"}},
		{name: "round-robin wraps from rangeEnd to rangeStart",
			ranges: []string{"10.0.0.0/24,10.0.0.10,10.0.0.12"},
			last:   map[string]string{"10.0.0.10-10.0.0.12": "10.0.0.12"},
			att:    podA, want: []string{"10.0.0.10"}},
		{name: "round-robin skips reserved addresses and wraps past them",
			ranges: []string{"10.0.0.0/24,10.0.0.10,10.0.0.12"},
			held:   map[string]Attachment{"10.0.0.12": podB, "10.0.0.10": podC},
			last:   map[string]string{"10.0.0.10-10.0.0.12": "10.0.0.11"},
			att:    podA, wantErr: nil, want: []string{"10.0.0.11"}},
		{name: "a last reserved address of another range is ignored",
			ranges: []string{"10.0.0.0/24"}, last: map[string]string{"10.9.0.1-10.9.0.254": "10.9.0.5"},
			att: podA, want: []string{"10.0.0.1"}},
		{name: "round-robin in a huge ipv6 range",
			ranges: []string{"fd00::/64"}, last: map[string]string{"fd00::1-fd00::ffff:ffff:ffff:ffff": "fd00::ffff:ffff:ffff:ffff"},
			held: map[string]Attachment{"fd00::1": podB},
			att:  podA, want: []string{"fd00::2"}},
		{name: "reservations outside every range do not interfere",
			ranges: []string{"10.0.0.0/30"}, held: map[string]Attachment{"10.9.9.9": podB, "10.0.0.1": podC},
			att: podA, want: []string{"10.0.0.2"}},
		{name: "a free requested address is given",
			ranges: []string{"10.0.0.0/24"}, requested: []string{"10.0.0.77"}, att: podA, want: []string{"10.0.0.77"}},
		{name: "requested addresses are honoured per family",
			ranges: []string{"10.0.0.0/24", "fd00::/64"}, requested: []string{"fd00::77"},
			att: podA, want: []string{"10.0.0.1", "fd00::77"}},
		{name: "a requested address held by another attachment is unavailable",
			ranges: []string{"10.0.0.0/24"}, held: map[string]Attachment{"10.0.0.77": podB},
			requested: []string{"10.0.0.77"}, att: podA, wantErr: ErrUnavailable},
		{name: "an unavailable requested ipv6 address leaves no ipv4 reserved",
			ranges: []string{"10.0.0.0/24", "fd00::/64"}, held: map[string]Attachment{"fd00::77": podB},
			requested: []string{"fd00::77"}, att: podA, wantErr: ErrUnavailable},
		{name: "the same container on another interface is another attachment",
			ranges: []string{"10.0.0.0/24"}, held: map[string]Attachment{"10.0.0.1": {ContainerID: "aaa", IfName: "net1"}},
			att: podA, want: []string{"10.0.0.2"}},
		{name: "an attachment holding an address gets it back",
			ranges: []string{"10.0.0.0/24"}, held: map[string]Attachment{"10.0.0.9": podA},
			att: podA, want: []string{"10.0.0.9"}},
		{name: "an attachment holding an address keeps it over a requested one",
			ranges: []string{"10.0.0.0/24"}, held: map[string]Attachment{"10.0.0.9": podA},
			requested: []string{"10.0.0.50"}, att: podA, want: []string{"10.0.0.9"}},
		{name: "an attachment holding ipv4 only gets an ipv6 address added",
			ranges: []string{"10.0.0.0/24", "fd00::/64"}, held: map[string]Attachment{"10.0.0.9": podA},
			att: podA, want: []string{"10.0.0.9", "fd00::1"}},
		{name: "an address held outside the ranges is not returned",
			ranges: []string{"10.0.0.0/24"}, held: map[string]Attachment{"10.9.0.9": podA},
			att: podA, want: []string{"10.0.0.1"}},
		{name: "a container ID with a slash is rejected",
			ranges: []string{"10.0.0.0/24"}, att: Attachment{ContainerID: "../../etc", IfName: "eth0"}},
		{name: "an empty container ID is rejected",
			ranges: []string{"10.0.0.0/24"}, att: Attachment{IfName: "eth0"}},
		{name: "a container ID starting with a dot is rejected",
			ranges: []string{"10.0.0.0/24"}, att: Attachment{ContainerID: ".hidden", IfName: "eth0"}},
		{name: "an interface name with a slash is rejected",
			ranges: []string{"10.0.0.0/24"}, att: Attachment{ContainerID: "aaa", IfName: "a/b"}},
		{name: "an interface name longer than 15 bytes is rejected",
			ranges: []string{"10.0.0.0/24"}, att: Attachment{ContainerID: "aaa", IfName: "abcdefghijklmnop"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := seeded(t, tt.held, tt.last)
			before, _ := m.List()
			got, err := m.Allocate(tt.att, rngs(t, tt.ranges...), addrs(tt.requested...))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("Allocate = %v, want error", got)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("Allocate error = %v, want %v", err, tt.wantErr)
				}
				if after, _ := m.List(); !maps.Equal(after, before) {
					t.Fatalf("failed Allocate changed the reservations: %v, was %v", after, before)
				}
				return
			}
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			var gotAddrs []string
			for _, al := range got {
				if !al.Range.Contains(al.Addr) {
					t.Errorf("allocation %s reports range %s which does not contain it", al.Addr, al.Range)
				}
				gotAddrs = append(gotAddrs, al.Addr.String())
			}
			if !slices.Equal(gotAddrs, tt.want) {
				t.Fatalf("Allocate = %v, want %v", gotAddrs, tt.want)
			}
			held, _ := m.List()
			for _, w := range tt.want {
				if a := held[netip.MustParseAddr(w)]; a != tt.att {
					t.Errorf("%s is held by %v, want %v", w, a, tt.att)
				}
			}
		})
	}
}

func TestAllocateIsIdempotent(t *testing.T) {
	m := New(NewMemStore())
	ranges := rngs(t, "10.0.0.0/24", "fd00::/64")
	first, err := m.Allocate(podA, ranges, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Allocate(podA, ranges, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(heldAgain(first), again) {
		t.Fatalf("second Allocate = %v, want %v, none fresh", again, first)
	}
	for _, a := range first {
		if !a.Fresh {
			t.Errorf("first Allocate: %v not fresh", a)
		}
	}
	if all, _ := m.List(); len(all) != 2 {
		t.Fatalf("reservations after two Allocates = %v, want 2", all)
	}
}

// heldAgain is what a repeated Allocate returns for allocs: the same
// addresses, none of them claimed by it.
func heldAgain(allocs []Allocation) []Allocation {
	out := slices.Clone(allocs)
	for i := range out {
		out[i].Fresh = false
	}
	return out
}

// TestReleaseAddrsFreesOnlyWhatTheAttachmentHolds: undoing one ADD frees the
// addresses it claimed, not those its attachment held before, nor another's.
func TestReleaseAddrsFreesOnlyWhatTheAttachmentHolds(t *testing.T) {
	m := New(NewMemStore())
	v4 := rngs(t, "10.0.0.0/24")
	both := rngs(t, "10.0.0.0/24", "fd00::/64")
	held, err := m.Allocate(podA, v4, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := m.Allocate(podB, v4, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A second ADD of podA, now dual-stack: the IPv4 address was held, the
	// IPv6 one is new.
	second, err := m.Allocate(podA, both, nil)
	if err != nil {
		t.Fatal(err)
	}
	var fresh []netip.Addr
	for _, a := range second {
		if a.Fresh {
			fresh = append(fresh, a.Addr)
		}
	}
	if len(fresh) != 1 || !fresh[0].Is6() {
		t.Fatalf("second Allocate = %v, want only the IPv6 address fresh", second)
	}
	if err := m.ReleaseAddrs(podA, append(fresh, other[0].Addr)); err != nil {
		t.Fatal(err)
	}
	all, _ := m.List()
	if len(all) != 2 || all[held[0].Addr] != podA || all[other[0].Addr] != podB {
		t.Fatalf("after ReleaseAddrs: %v, want %s held by %s and %s by %s",
			all, held[0].Addr, podA, other[0].Addr, podB)
	}
}

func TestFreedAddressIsNotReusedAtOnce(t *testing.T) {
	m := New(NewMemStore())
	ranges := rngs(t, "10.0.0.0/29") // .1 - .6
	var got []string
	for i := range 8 {
		a := Attachment{ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"}
		al, err := m.Allocate(a, ranges, nil)
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		got = append(got, al[0].Addr.String())
		if err := m.Release(a); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.1", "10.0.0.2"}
	if !slices.Equal(got, want) {
		t.Fatalf("allocate/release sequence = %v, want %v", got, want)
	}
}

func TestFillingARangeGivesEveryAddressOnceThenExhausted(t *testing.T) {
	for _, r := range []string{"10.0.0.0/28", "10.0.0.0/31", "10.0.0.1/32", "fd00::/124", "fd00::/64,fd00::fff0,fd00::ffff"} {
		t.Run(r, func(t *testing.T) {
			m := New(NewMemStore())
			ranges := rngs(t, r)
			n, _ := size(ranges[0])
			seen := map[netip.Addr]bool{}
			for i := range n {
				al, err := m.Allocate(Attachment{ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"}, ranges, nil)
				if err != nil {
					t.Fatalf("allocation %d of %d: %v", i+1, n, err)
				}
				if seen[al[0].Addr] {
					t.Fatalf("%s handed out twice", al[0].Addr)
				}
				seen[al[0].Addr] = true
			}
			if _, err := m.Allocate(podA, ranges, nil); !errors.Is(err, ErrExhausted) {
				t.Fatalf("allocation past the end: %v, want ErrExhausted", err)
			}
			if v4, v6, _ := m.Free(ranges); v4 != 0 || v6 != 0 {
				t.Fatalf("Free of a full range = %d, %d", v4, v6)
			}
		})
	}
}

// failingStore fails Claim for one address, to drive commit's rollback.
type failingStore struct {
	Store
	fail netip.Addr
}

func (s failingStore) Claim(ip netip.Addr, a Attachment) error {
	if ip == s.fail {
		return errors.New("disk full")
	}
	return s.Store.Claim(ip, a)
}

func TestFailedClaimRollsBackEarlierClaims(t *testing.T) {
	mem := NewMemStore()
	m := New(failingStore{Store: mem, fail: netip.MustParseAddr("fd00::1")})
	_, err := m.Allocate(podA, rngs(t, "10.0.0.0/24", "fd00::/64"), nil)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Allocate error = %v, want the claim failure", err)
	}
	if held, _ := mem.Reservations(); len(held) != 0 {
		t.Fatalf("reservations after a failed Allocate = %v, want none", held)
	}
	if last, _ := mem.LastReserved(); len(last) != 0 {
		t.Fatalf("last reserved after a failed Allocate = %v, want none", last)
	}
}

func TestRelease(t *testing.T) {
	m := seeded(t, map[string]Attachment{"10.0.0.1": podA, "fd00::1": podA, "10.0.0.2": podB}, nil)
	if err := m.Release(podA); err != nil {
		t.Fatal(err)
	}
	if err := m.Release(podC); err != nil {
		t.Fatalf("releasing an unknown attachment: %v", err)
	}
	held, _ := m.List()
	want := map[netip.Addr]Attachment{netip.MustParseAddr("10.0.0.2"): podB}
	if !maps.Equal(held, want) {
		t.Fatalf("after Release = %v, want %v", held, want)
	}
	if got, _ := m.Get(podA); len(got) != 0 {
		t.Fatalf("Get after Release = %v", got)
	}
}

func TestGet(t *testing.T) {
	m := seeded(t, map[string]Attachment{"fd00::1": podA, "10.0.0.1": podA, "10.0.0.2": podB}, nil)
	got, err := m.Get(podA)
	if err != nil {
		t.Fatal(err)
	}
	if want := addrs("10.0.0.1", "fd00::1"); !slices.Equal(got, want) {
		t.Fatalf("Get = %v, want %v (sorted, ipv4 first)", got, want)
	}
}

func TestGCKeepsOnlyValidAttachments(t *testing.T) {
	m := seeded(t, map[string]Attachment{
		"10.0.0.1": podA, "fd00::1": podA, "10.0.0.2": podB, "fd00::2": podB, "10.0.0.3": podC,
	}, nil)
	freed, err := m.GC([]Attachment{podB})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Attachment{podA, podC}; !slices.Equal(freed, want) {
		t.Fatalf("GC freed %v, want %v", freed, want)
	}
	held, _ := m.List()
	want := map[netip.Addr]Attachment{netip.MustParseAddr("10.0.0.2"): podB, netip.MustParseAddr("fd00::2"): podB}
	if !maps.Equal(held, want) {
		t.Fatalf("after GC = %v, want %v", held, want)
	}
}

func TestFree(t *testing.T) {
	tests := []struct {
		name   string
		ranges []string
		held   map[string]Attachment
		v4, v6 uint64
	}{
		{name: "empty ipv4 /24 has 254 usable addresses", ranges: []string{"10.0.0.0/24"}, v4: 254},
		{name: "reservations inside the range are subtracted", ranges: []string{"10.0.0.0/24"},
			held: map[string]Attachment{"10.0.0.1": podA, "10.0.0.2": podB, "10.9.0.1": podC}, v4: 252},
		{name: "a /32 has one address", ranges: []string{"10.0.0.1/32"}, v4: 1},
		{name: "a /31 has two addresses", ranges: []string{"10.0.0.0/31"}, v4: 2},
		{name: "rangeStart and rangeEnd bound the count", ranges: []string{"10.0.0.0/24,10.0.0.10,10.0.0.19"},
			held: map[string]Attachment{"10.0.0.1": podA, "10.0.0.10": podB}, v4: 9},
		{name: "families and ranges are summed apart",
			ranges: []string{"10.0.0.0/30", "10.0.1.0/30", "fd00::/120"}, v4: 4, v6: 255},
		{name: "a huge ipv6 range saturates", ranges: []string{"fd00::/64"}, v6: math.MaxUint64},
		{name: "a range of exactly 2^64-1 addresses does not saturate",
			ranges: []string{"fd00::/64,fd00::1,fd00::ffff:ffff:ffff:ffff"},
			held:   map[string]Attachment{"fd00::1": podA}, v6: math.MaxUint64 - 1},
		{name: "ipv6 sums saturate", ranges: []string{"fd00::/64,fd00::1,fd00::ffff:ffff:ffff:ffff", "fd01::/120"}, v6: math.MaxUint64},
		{name: "the whole ipv6 space saturates", ranges: []string{"::/0,::,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, v6: math.MaxUint64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := seeded(t, tt.held, nil)
			v4, v6, err := m.Free(rngs(t, tt.ranges...))
			if err != nil {
				t.Fatal(err)
			}
			if v4 != tt.v4 || v6 != tt.v6 {
				t.Fatalf("Free = %d, %d, want %d, %d", v4, v6, tt.v4, tt.v6)
			}
		})
	}
}

func TestReleaseOfAnInvalidAttachmentFreesNothing(t *testing.T) {
	m := seeded(t, map[string]Attachment{"10.0.0.1": {}, "10.0.0.2": podA}, nil)
	if err := m.Release(Attachment{}); err == nil {
		t.Fatal("Release of the zero Attachment succeeded, want an error")
	}
	if held, _ := m.List(); len(held) != 2 {
		t.Fatalf("reservations after the rejected Release = %v, want both kept", held)
	}
}
