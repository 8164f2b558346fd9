package ruleset

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// String renders the ruleset as `nft -f` input. The text is byte-stable and
// laid out the way `nft list table inet weir` prints it (counters, sets and
// maps, then chains, each sorted by name), except that element lists stay
// on one line and counters show zero (the kernel's values are read apart).
func (r Ruleset) String() string { return r.StringWithCounters(nil) }

// StringWithCounters is String with the counters' values (by name) in
// place of zero, as `nft list table inet weir` prints them.
func (r Ruleset) StringWithCounters(values map[string]CounterValue) string {
	var b strings.Builder
	b.WriteString("table inet " + TableName + " {\n")
	first := true
	sep := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	for _, c := range r.Counters {
		sep()
		v := values[c.Name]
		fmt.Fprintf(&b, "\tcounter %s {\n\t\tpackets %d bytes %d\n\t}\n", c.Name, v.Packets, v.Bytes)
	}
	for _, s := range r.Sets {
		sep()
		s.render(&b)
	}
	for _, c := range r.Chains {
		sep()
		c.render(&b)
	}
	b.WriteString("}\n")
	return b.String()
}

func (s Set) render(b *strings.Builder) {
	kind := "set"
	if s.Map {
		kind = "map"
	}
	fmt.Fprintf(b, "\t%s %s {\n", kind, s.Name)
	if s.Key[0] == TypeID {
		fmt.Fprintf(b, "\t\ttypeof %s", s.typeofString())
	} else {
		fmt.Fprintf(b, "\t\ttype %s", s.typeString())
	}
	if s.Map {
		b.WriteString(" : verdict")
	}
	b.WriteString("\n")
	if s.Size > 0 {
		fmt.Fprintf(b, "\t\tsize %d\n", s.Size)
	}
	if flags := s.flags(); flags != "" {
		b.WriteString("\t\tflags " + flags + "\n")
	}
	if s.Comment != "" {
		fmt.Fprintf(b, "\t\tcomment %q\n", s.Comment)
	}
	if len(s.Elems) > 0 && !s.Dynamic {
		parts := make([]string, 0, len(s.Elems))
		for _, e := range s.Elems {
			parts = append(parts, s.elemString(e))
		}
		fmt.Fprintf(b, "\t\telements = { %s }\n", strings.Join(parts, ", "))
	}
	b.WriteString("\t}\n")
}

// flags are the set's flags as nft lists them.
func (s Set) flags() string {
	var out []string
	if s.Interval {
		out = append(out, "interval")
	}
	if s.Timeout {
		out = append(out, "timeout")
	}
	return strings.Join(out, ",")
}

func (s Set) typeString() string {
	parts := make([]string, 0, len(s.Key))
	for _, t := range s.Key {
		parts = append(parts, t.String())
	}
	return strings.Join(parts, " . ")
}

func (s Set) typeofString() string {
	parts := make([]string, 0, len(s.Key))
	for _, t := range s.Key {
		parts = append(parts, t.typeofString())
	}
	return strings.Join(parts, " . ")
}

func (s Set) elemString(e Elem) string {
	parts := make([]string, 0, len(e.Key))
	for i, k := range e.Key {
		parts = append(parts, RangeString(s.Key[i], k))
	}
	out := strings.Join(parts, " . ")
	if s.Map {
		out += " : " + e.MapVerdict().String()
	}
	return out
}

// RangeString prints one key field as nft does: a single value, a prefix
// when the range is one, else from-to.
func RangeString(t Type, r Range) string {
	if r.From == r.To {
		return valueString(t, r.From)
	}
	if t == TypeIPv4 || t == TypeIPv6 {
		lo, _ := netip.AddrFromSlice([]byte(r.From))
		hi, _ := netip.AddrFromSlice([]byte(r.To))
		if p, ok := AsPrefix(lo, hi); ok {
			return p.String()
		}
	}
	return valueString(t, r.From) + "-" + valueString(t, r.To)
}

// AsPrefix returns the prefix covering exactly lo..hi, if one does.
func AsPrefix(lo, hi netip.Addr) (netip.Prefix, bool) {
	for bits := 0; bits <= lo.BitLen(); bits++ {
		p := netip.PrefixFrom(lo, bits)
		if p.Masked().Addr() != lo {
			continue
		}
		if LastAddr(p) == hi {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// ProtoName names an IP protocol number as nft and iptables do: tcp, udp,
// sctp, else the number.
func ProtoName(n uint8) string {
	switch n {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoSCTP:
		return "sctp"
	}
	return fmt.Sprint(n)
}

// ProtoNumber is the number of a protocol NetworkPolicy knows, named as
// ProtoName names it, in any case (tcp, UDP, Sctp); ok is false for any
// other name.
func ProtoNumber(name string) (n uint8, ok bool) {
	for _, p := range []uint8{ProtoTCP, ProtoUDP, ProtoSCTP} {
		if strings.EqualFold(name, ProtoName(p)) {
			return p, true
		}
	}
	return 0, false
}

// LastAddr is the last address of p.
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= p.Bits() {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func valueString(t Type, v string) string {
	switch t {
	case TypeIPv4, TypeIPv6:
		a, _ := netip.AddrFromSlice([]byte(v))
		return a.String()
	case TypeProto:
		return ProtoName(v[0])
	case TypeID, TypeGroup:
		return strconv.FormatUint(uint64(binary.BigEndian.Uint32([]byte(v))), 10)
	default:
		return strconv.Itoa(int(v[0])<<8 | int(v[1]))
	}
}

func (c Chain) render(b *strings.Builder) {
	fmt.Fprintf(b, "\tchain %s {\n", c.Name)
	if c.Base != nil {
		fmt.Fprintf(b, "\t\ttype %s hook %s priority %s; policy accept;\n", c.Base.Type, c.Base.Hook, c.Base.priorityString())
	}
	for _, r := range c.Rules {
		b.WriteString("\t\t" + r.String() + "\n")
	}
	b.WriteString("\t}\n")
}

// stdPriorities are the priorities nft names, and the hooks it names
// them in (none: every hook).
var stdPriorities = []struct {
	name  string
	value int
	hooks []Hook
}{
	{"raw", PriorityRaw, nil},
	{"mangle", PriorityMangle, nil},
	{"dstnat", PriorityDstNAT, []Hook{HookPrerouting, "output"}},
	{"filter", PriorityFilter, nil},
	{"security", PrioritySecurity, nil},
	{"srcnat", PrioritySrcNAT, []Hook{HookPostrouting, HookInput}},
}

// priorityString names a priority the way nft prints it: a standard
// priority of the hook within 10 of it, plus or minus the difference;
// else the number.
func (b Base) priorityString() string {
	for _, p := range stdPriorities {
		d := b.Priority - p.value
		if d < -10 || d > 10 || p.hooks != nil && !slices.Contains(p.hooks, b.Hook) {
			continue
		}
		switch {
		case d > 0:
			return fmt.Sprintf("%s + %d", p.name, d)
		case d < 0:
			return fmt.Sprintf("%s - %d", p.name, -d)
		}
		return p.name
	}
	return strconv.Itoa(b.Priority)
}

// String prints one rule as nft does.
func (r Rule) String() string {
	parts := make([]string, 0, len(r.Matches)+2)
	for _, m := range r.Matches {
		parts = append(parts, m.String())
	}
	if r.Counter != "" {
		parts = append(parts, fmt.Sprintf("counter name %q", r.Counter))
	}
	if l := r.Log; l != nil {
		if l.Rate > 0 {
			parts = append(parts, fmt.Sprintf("limit rate %d/second", l.Rate))
		}
		parts = append(parts, fmt.Sprintf("log prefix %q group %d", l.Prefix, l.Group))
	}
	if m := r.Mark; m != nil {
		parts = append(parts, m.String())
	}
	if tp := r.TProxy; tp != nil {
		parts = append(parts, tp.String())
	}
	if r.Log == nil && r.Mark == nil || r.Verdict.Kind != VerdictNone {
		parts = append(parts, r.Verdict.String())
	}
	if c := r.Owner.String(); c != "" {
		parts = append(parts, fmt.Sprintf("comment %q", c))
	}
	return strings.Join(parts, " ")
}

func (m Match) String() string {
	switch m.Kind {
	case MatchCtState:
		return "ct state " + ctStateString(m.CtStates)
	case MatchPort:
		switch {
		case m.AllPorts:
			return "meta l4proto " + ProtoName(m.Proto)
		case m.PortFrom == m.PortTo:
			return fmt.Sprintf("%s dport %d", ProtoName(m.Proto), m.PortFrom)
		}
		return fmt.Sprintf("%s dport %d-%d", ProtoName(m.Proto), m.PortFrom, m.PortTo)
	case MatchIifname, MatchOifname:
		name := "iifname"
		if m.Kind == MatchOifname {
			name = "oifname"
		}
		if m.Negate {
			return fmt.Sprintf("%s != %q", name, m.IfPrefix+"*")
		}
		return fmt.Sprintf("%s %q", name, m.IfPrefix+"*")
	case MatchRPFail:
		return "fib saddr . iif oif missing"
	case MatchMark:
		op := "=="
		if m.Negate {
			op = "!="
		}
		return fmt.Sprintf("meta mark & 0x%08x %s 0x%08x", m.Mark, op, m.Mark)
	}
	op := ""
	if m.Negate {
		op = "!= "
	}
	key := fieldsString(m.Fields)
	if m.ID != 0 {
		key = "numgen random mod 1 offset " + strconv.FormatUint(uint64(m.ID), 10) + " . " + key
	}
	return key + " " + op + "@" + m.Set
}

func ctStateString(s uint32) string {
	names := []struct {
		bit  uint32
		name string
	}{{CtInvalid, "invalid"}, {CtEstablished, "established"}, {CtRelated, "related"}, {CtNew, "new"}}
	var out []string
	for _, n := range names {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, ",")
}

func fieldsString(fs []Field) string {
	parts := make([]string, 0, len(fs))
	for _, f := range fs {
		parts = append(parts, f.String())
	}
	return strings.Join(parts, " . ")
}

func (f Field) String() string {
	return [...]string{"ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr", "meta l4proto", "th dport", "iifgroup", "oifgroup"}[f]
}

func (v Verdict) String() string {
	switch v.Kind {
	case VerdictAccept:
		return "accept"
	case VerdictDrop:
		return "drop"
	case VerdictJump:
		return "jump " + v.Chain
	case VerdictMasquerade:
		return "masquerade"
	case VerdictVMap:
		return fieldsString(v.Fields) + " vmap @" + v.Map
	case VerdictReturn:
		return "return"
	}
	return "continue"
}

// String prints the statement as nft lists it: an or when the bits are
// set, an and when they are cleared, both otherwise.
func (m MarkSet) String() string {
	switch {
	case m.Value == m.Mask:
		return fmt.Sprintf("meta mark set meta mark | 0x%08x", m.Value)
	case m.Value == 0:
		return fmt.Sprintf("meta mark set meta mark & 0x%08x", ^m.Mask)
	}
	return fmt.Sprintf("meta mark set meta mark & 0x%08x | 0x%08x", ^m.Mask, m.Value)
}

// String prints the statement as nft lists it.
func (t TProxy) String() string {
	family := "ip"
	if t.IPv6 {
		family = "ip6"
	}
	return fmt.Sprintf("tproxy %s to :%d", family, t.Port)
}
