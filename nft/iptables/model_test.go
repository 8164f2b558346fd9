package iptables

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weir-cni/weir/nft"
)

func TestChainName(t *testing.T) {
	long := "pol-in-ABCDEFGH-some-namespace/some-very-long-policy-name-that-is-long"
	tests := []struct {
		name, in string
		want     string
	}{
		{"short plain name is kept", "forward-egress", "WEIR-forward-egress"},
		{"long name is cut and hashed", long, "WEIR-pol-in-ABCDEFG-" + hash8(long)},
		{"slash is not kept, so the name is hashed", "sel/x", "WEIR-sel_x-" + hash8("sel/x")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := chainName(tc.in)
			if got != tc.want {
				t.Errorf("chainName(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if len(got) > maxChainName {
				t.Errorf("%q is longer than %d", got, maxChainName)
			}
		})
	}
	if chainName(long+"a") == chainName(long+"b") {
		t.Error("names sharing a long prefix collide")
	}
}

func TestPlaceJump(t *testing.T) {
	j := jump{builtin: "FORWARD", target: "WEIR-FORWARD"}
	tests := []struct {
		name    string
		rules   []string
		wanted  bool
		wantDel int
		wantAdd bool
	}{
		{"missing jump is inserted", []string{"-P FORWARD ACCEPT", "-A FORWARD -j OTHER"}, true, 0, true},
		{"jump at position 1 is left alone", []string{"-P FORWARD ACCEPT", "-A FORWARD -j WEIR-FORWARD", "-A FORWARD -j OTHER"}, true, 0, false},
		{"jump below another rule moves to position 1", []string{"-A FORWARD -j OTHER", "-A FORWARD -j WEIR-FORWARD"}, true, 1, true},
		{"duplicate jumps are all deleted and one inserted", []string{"-A FORWARD -j WEIR-FORWARD", "-A FORWARD -j WEIR-FORWARD"}, true, 2, true},
		{"unwanted jump is deleted", []string{"-A FORWARD -j WEIR-FORWARD"}, false, 1, false},
		{"nothing to do without jump or want", []string{"-A FORWARD -j OTHER"}, false, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			del, add := placeJump(tc.rules, j, tc.wanted)
			if len(del) != tc.wantDel || add != tc.wantAdd {
				t.Errorf("got %d deletes, add=%v; want %d, %v", len(del), add, tc.wantDel, tc.wantAdd)
			}
		})
	}
}

func TestElemRules(t *testing.T) {
	b := func(bs ...byte) string { return string(bs) }
	tests := []struct {
		name   string
		set    nft.Set
		id     uint32
		fields []nft.Field
		want   []string
	}{
		{"prefix range is a CIDR",
			nft.Set{Key: []nft.Type{nft.TypeIPv4}, Elems: []nft.Elem{{Key: []nft.Range{{From: b(10, 0, 0, 0), To: b(10, 0, 255, 255)}}}}},
			0, []nft.Field{nft.FieldIPSaddr}, []string{"-s 10.0.0.0/16 -j X"}},
		{"other range is an iprange",
			nft.Set{Key: []nft.Type{nft.TypeIPv4}, Elems: []nft.Elem{{Key: []nft.Range{{From: b(10, 0, 0, 1), To: b(10, 0, 0, 6)}}}}},
			0, []nft.Field{nft.FieldIPDaddr}, []string{"-m iprange --dst-range 10.0.0.1-10.0.0.6 -j X"}},
		{"protocol and port range",
			nft.Set{Key: []nft.Type{nft.TypeProto, nft.TypePort}, Elems: []nft.Elem{{Key: []nft.Range{{From: b(17), To: b(17)}, {From: b(0, 80), To: b(0, 90)}}}}},
			0, []nft.Field{nft.FieldL4Proto, nft.FieldTHDport}, []string{"-p udp -m udp --dport 80:90 -j X"}},
		{"every port of a protocol needs no port match",
			nft.Set{Key: []nft.Type{nft.TypeProto, nft.TypePort}, Elems: []nft.Elem{{Key: []nft.Range{{From: b(6), To: b(6)}, {From: b(0, 0), To: b(255, 255)}}}}},
			0, []nft.Field{nft.FieldL4Proto, nft.FieldTHDport}, []string{"-p tcp -j X"}},
		{"a port without protocol is spelled for tcp, udp and sctp",
			nft.Set{Key: []nft.Type{nft.TypePort}, Elems: []nft.Elem{{Key: []nft.Range{{From: b(0, 53), To: b(0, 53)}}}}},
			0, []nft.Field{nft.FieldTHDport}, []string{"-p tcp -m tcp --dport 53 -j X", "-p udp -m udp --dport 53 -j X", "-p sctp -m sctp --dport 53 -j X"}},
		{"a port of another protocol matches nothing",
			nft.Set{Key: []nft.Type{nft.TypeProto, nft.TypePort}, Elems: []nft.Elem{{Key: []nft.Range{{From: b(1), To: b(1)}, {From: b(0, 53), To: b(0, 53)}}}}},
			0, []nft.Field{nft.FieldL4Proto, nft.FieldTHDport}, nil},
		{"address, protocol and port",
			nft.Set{Key: []nft.Type{nft.TypeIPv6, nft.TypeProto, nft.TypePort}, Elems: []nft.Elem{{Key: []nft.Range{
				{From: string(netip.MustParseAddr("fd00::1").AsSlice()), To: string(netip.MustParseAddr("fd00::1").AsSlice())},
				{From: b(6), To: b(6)}, {From: b(31, 144), To: b(31, 144)}}}}},
			0, []nft.Field{nft.FieldIP6Daddr, nft.FieldL4Proto, nft.FieldTHDport}, []string{"-d fd00::1/128 -p tcp -m tcp --dport 8080 -j X"}},
		{"a lookup with an id takes only that id's elements",
			nft.Set{Key: []nft.Type{nft.TypeID, nft.TypeIPv4}, Elems: []nft.Elem{
				{Key: []nft.Range{{From: b(0, 0, 0, 1), To: b(0, 0, 0, 1)}, {From: b(10, 0, 0, 1), To: b(10, 0, 0, 1)}}},
				{Key: []nft.Range{{From: b(0, 0, 0, 2), To: b(0, 0, 0, 2)}, {From: b(10, 0, 0, 2), To: b(10, 0, 0, 2)}}},
				{Key: []nft.Range{{From: b(0, 0, 0, 2), To: b(0, 0, 0, 2)}, {From: b(10, 0, 0, 3), To: b(10, 0, 0, 3)}}},
				{Key: []nft.Range{{From: b(0, 0, 0, 3), To: b(0, 0, 0, 3)}, {From: b(10, 0, 0, 4), To: b(10, 0, 0, 4)}}},
			}},
			2, []nft.Field{nft.FieldIPSaddr}, []string{"-s 10.0.0.2/32 -j X", "-s 10.0.0.3/32 -j X"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range setRules(tc.set, tc.id, tc.fields) {
				r.target = "X"
				got = append(got, strings.Join(r.args(), " "))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
