package iptables

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/weir-cni/weir/ruleset"
)

func TestChainName(t *testing.T) {
	long := "pol-in-ABCDEFGH-some-namespace/some-very-long-policy-name-that-is-long"
	tests := []struct {
		name, in string
		want     string
	}{
		{"short plain name is kept", "forward-egress", "WEIR-forward-egress"},
		{"long name is cut and hashed", long, "WEIR-pol-in-ABCDEFG-" + ruleset.Hash8(long)},
		{"slash is not kept, so the name is hashed", "sel/x", "WEIR-sel_x-" + ruleset.Hash8("sel/x")},
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
		set    ruleset.Set
		id     uint32
		fields []ruleset.Field
		want   []string
	}{
		{"prefix range is a CIDR",
			ruleset.Set{Key: []ruleset.Type{ruleset.TypeIPv4}, Elems: []ruleset.Elem{{Key: []ruleset.Range{{From: b(10, 0, 0, 0), To: b(10, 0, 255, 255)}}}}},
			0, []ruleset.Field{ruleset.FieldIPSaddr}, []string{"-s 10.0.0.0/16 -j X"}},
		{"other range is an iprange",
			ruleset.Set{Key: []ruleset.Type{ruleset.TypeIPv4}, Elems: []ruleset.Elem{{Key: []ruleset.Range{{From: b(10, 0, 0, 1), To: b(10, 0, 0, 6)}}}}},
			0, []ruleset.Field{ruleset.FieldIPDaddr}, []string{"-m iprange --dst-range 10.0.0.1-10.0.0.6 -j X"}},
		{"protocol and port range",
			ruleset.Set{Key: []ruleset.Type{ruleset.TypeProto, ruleset.TypePort}, Elems: []ruleset.Elem{{Key: []ruleset.Range{{From: b(17), To: b(17)}, {From: b(0, 80), To: b(0, 90)}}}}},
			0, []ruleset.Field{ruleset.FieldL4Proto, ruleset.FieldTHDport}, []string{"-p udp -m udp --dport 80:90 -j X"}},
		{"every port of a protocol needs no port match",
			ruleset.Set{Key: []ruleset.Type{ruleset.TypeProto, ruleset.TypePort}, Elems: []ruleset.Elem{{Key: []ruleset.Range{{From: b(6), To: b(6)}, {From: b(0, 0), To: b(255, 255)}}}}},
			0, []ruleset.Field{ruleset.FieldL4Proto, ruleset.FieldTHDport}, []string{"-p tcp -j X"}},
		{"a port without protocol is spelled for tcp, udp and sctp",
			ruleset.Set{Key: []ruleset.Type{ruleset.TypePort}, Elems: []ruleset.Elem{{Key: []ruleset.Range{{From: b(0, 53), To: b(0, 53)}}}}},
			0, []ruleset.Field{ruleset.FieldTHDport}, []string{"-p tcp -m tcp --dport 53 -j X", "-p udp -m udp --dport 53 -j X", "-p sctp -m sctp --dport 53 -j X"}},
		{"a port of another protocol matches nothing",
			ruleset.Set{Key: []ruleset.Type{ruleset.TypeProto, ruleset.TypePort}, Elems: []ruleset.Elem{{Key: []ruleset.Range{{From: b(1), To: b(1)}, {From: b(0, 53), To: b(0, 53)}}}}},
			0, []ruleset.Field{ruleset.FieldL4Proto, ruleset.FieldTHDport}, nil},
		{"address, protocol and port",
			ruleset.Set{Key: []ruleset.Type{ruleset.TypeIPv6, ruleset.TypeProto, ruleset.TypePort}, Elems: []ruleset.Elem{{Key: []ruleset.Range{
				{From: string(netip.MustParseAddr("fd00::1").AsSlice()), To: string(netip.MustParseAddr("fd00::1").AsSlice())},
				{From: b(6), To: b(6)}, {From: b(31, 144), To: b(31, 144)}}}}},
			0, []ruleset.Field{ruleset.FieldIP6Daddr, ruleset.FieldL4Proto, ruleset.FieldTHDport}, []string{"-d fd00::1/128 -p tcp -m tcp --dport 8080 -j X"}},
		{"a lookup with an id takes only that id's elements",
			ruleset.Set{Key: []ruleset.Type{ruleset.TypeID, ruleset.TypeIPv4}, Elems: []ruleset.Elem{
				{Key: []ruleset.Range{{From: b(0, 0, 0, 1), To: b(0, 0, 0, 1)}, {From: b(10, 0, 0, 1), To: b(10, 0, 0, 1)}}},
				{Key: []ruleset.Range{{From: b(0, 0, 0, 2), To: b(0, 0, 0, 2)}, {From: b(10, 0, 0, 2), To: b(10, 0, 0, 2)}}},
				{Key: []ruleset.Range{{From: b(0, 0, 0, 2), To: b(0, 0, 0, 2)}, {From: b(10, 0, 0, 3), To: b(10, 0, 0, 3)}}},
				{Key: []ruleset.Range{{From: b(0, 0, 0, 3), To: b(0, 0, 0, 3)}, {From: b(10, 0, 0, 4), To: b(10, 0, 0, 4)}}},
			}},
			2, []ruleset.Field{ruleset.FieldIPSaddr}, []string{"-s 10.0.0.2/32 -j X", "-s 10.0.0.3/32 -j X"}},
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

// TestRuleLeavesOnlyWithoutMatches sets each field of a goto rule in turn:
// leaves holds with only its comment or counter set (they match every
// packet), and with any match set (a field args renders before the
// target) or a target that goes on with the next rule (NFLOG, MARK) it
// does not. A field added to rule fails here until it is listed below or
// leaves sees it.
func TestRuleLeavesOnlyWithoutMatches(t *testing.T) {
	base := rule{target: "WEIR-x", goTo: true}
	if !base.leaves() {
		t.Fatalf("%v: a goto without matches does not leave", base.args())
	}
	keeps := map[string]bool{"comment": true, "counter": true, "target": true} // leaves holds with these set
	v := reflect.ValueOf(&base).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if name == "goTo" || name == "notIif" || name == "notOif" { // only with a match, or r is not a goto
			continue
		}
		r := base
		f := reflect.ValueOf(&r).Elem().Field(i)
		f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
		switch f.Kind() {
		case reflect.String:
			f.SetString("1")
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 1, 1))
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		default:
			t.Fatalf("field %s: kind %s not handled by this test", name, f.Kind())
		}
		if got := r.leaves(); got != keeps[name] {
			t.Errorf("goto rule with %s set (%v): leaves = %v, want %v", name, r.args(), got, keeps[name])
		}
	}
}
