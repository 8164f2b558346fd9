package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weir-cni/weir/ruleset"
	networkingv1 "k8s.io/api/networking/v1"
)

func TestIPBlockIntervals(t *testing.T) {
	cases := []struct {
		name   string
		block  networkingv1.IPBlock
		want   string // rendered intervals
		notes  int
		failed bool
	}{
		{name: "cidr alone", block: networkingv1.IPBlock{CIDR: "10.0.0.0/8"}, want: "10.0.0.0/8"},
		{name: "host bits are masked", block: networkingv1.IPBlock{CIDR: "10.1.2.3/16"}, want: "10.1.0.0/16"},
		{name: "except splits the cidr", block: networkingv1.IPBlock{CIDR: "172.17.0.0/16", Except: []string{"172.17.1.0/24"}},
			want: "172.17.0.0/24 172.17.2.0-172.17.255.255"},
		{name: "except at the start", block: networkingv1.IPBlock{CIDR: "10.0.0.0/24", Except: []string{"10.0.0.0/25"}}, want: "10.0.0.128/25"},
		{name: "except at the end of the address space", block: networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"255.255.255.0/24"}},
			want: "0.0.0.0-255.255.254.255"},
		{name: "except equal to cidr leaves nothing", block: networkingv1.IPBlock{CIDR: "10.0.0.0/24", Except: []string{"10.0.0.0/24"}}, want: ""},
		{name: "overlapping excepts", block: networkingv1.IPBlock{CIDR: "10.0.0.0/24", Except: []string{"10.0.0.0/26", "10.0.0.32/27", "10.0.0.192/26"}},
			want: "10.0.0.64-10.0.0.191"},
		{name: "ipv6 with except", block: networkingv1.IPBlock{CIDR: "fd00::/16", Except: []string{"fd00:1::/32"}},
			want: "fd00::/32 fd00:2::-fd00:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{name: "ipv4-mapped cidr is ipv4", block: networkingv1.IPBlock{CIDR: "::ffff:10.0.0.0/104"}, want: "10.0.0.0/8"},
		{name: "except outside cidr is reported", block: networkingv1.IPBlock{CIDR: "10.0.0.0/24", Except: []string{"192.168.0.0/24"}},
			want: "10.0.0.0/24", notes: 1},
		{name: "except wider than cidr is reported and subtracts all", block: networkingv1.IPBlock{CIDR: "10.0.0.0/24", Except: []string{"10.0.0.0/8"}},
			want: "", notes: 1},
		{name: "bad cidr fails", block: networkingv1.IPBlock{CIDR: "10.0.0.0/33"}, failed: true},
		{name: "bad except fails", block: networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"x"}}, failed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ivs, notes, err := ipBlockIntervals(&tc.block)
			if (err != nil) != tc.failed {
				t.Fatalf("err = %v, want failure %v", err, tc.failed)
			}
			var got []string
			for _, e := range intervalElems(ivs) {
				typ := ruleset.TypeIPv4
				if len(e.Key[0].From) == 16 {
					typ = ruleset.TypeIPv6
				}
				got = append(got, ruleset.RangeString(typ, e.Key[0]))
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("got %q, want %q", g, tc.want)
			}
			if len(notes) != tc.notes {
				t.Errorf("notes = %v, want %d", notes, tc.notes)
			}
		})
	}
}

// TestAddrBytes pins addrBytes to AsSlice, the key encoding of the model.
func TestAddrBytes(t *testing.T) {
	for _, a := range []netip.Addr{{}, netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00::1"), netip.MustParseAddr("::ffff:10.1.2.3")} {
		if got, want := addrBytes(a), string(a.AsSlice()); got != want {
			t.Errorf("addrBytes(%v) = %x, want %x", a, got, want)
		}
	}
}
