package ruleset

import (
	"encoding/binary"
	"slices"
	"sort"
	"strings"
)

// Ruleset is the desired content of the table `inet weir`: a plain value,
// built by Compile, rendered by String, walked by Trace, compared by Diff and
// written to the kernel by an Applier.
type Ruleset struct {
	// Sets holds sets and verdict maps, sorted by name.
	Sets []Set
	// Chains holds base and regular chains, sorted by name.
	Chains []Chain
	// Counters are the named counters rules count into, sorted by name,
	// each with its owner: one per policy rule (the connections it
	// allowed), one per direction for the packets isolation dropped, one
	// per direction for the packets of unclassified pods dropped, and one
	// for spoofed sources.
	Counters []Counter
	// Problems lists input the compiler could not enforce as written (bad
	// selectors, CIDRs, protocols, named ports nobody defines), sorted. Each
	// affected rule fails closed: it allows nothing.
	Problems []string
	// DNS lists the ClusterNetworkPolicy egress rules with domainNames
	// peers, for the DNS proxy that fills their Dynamic sets (see DNSRule).
	DNS []DNSRule
}

// Type is the data type of one field of a set key.
type Type int

// Set key types, named as nft names them.
const (
	TypeIPv4  Type = iota // ipv4_addr, 4 bytes
	TypeIPv6              // ipv6_addr, 16 bytes
	TypeProto             // inet_proto, 1 byte
	TypePort              // inet_service, 2 bytes
	// TypeID is a rule id (4 bytes, big-endian in the model): the first
	// field of the shared sets, where one set holds the elements of many
	// rules and each rule looks up only its own by prefixing its id
	// (`numgen random mod 1 offset ID . ip saddr @peers4`).
	TypeID
	// TypeGroup is a link group (devgroup, 4 bytes, big-endian in the
	// model, host byte order in the kernel): see policy/unclassified.go.
	TypeGroup
)

// Set is a named set, or a verdict map when Map is true.
type Set struct {
	Name string
	// Key lists the field types; more than one is a concatenation.
	Key      []Type
	Interval bool
	// Map makes the set a verdict map (`type K : verdict`).
	Map bool
	// Timeout lets each element carry a timeout after which the kernel
	// removes it (`flags timeout`).
	Timeout bool
	// Size, when not 0, is the most elements the kernel lets the set hold
	// (`size N`): an add beyond it fails.
	Size uint32
	// Dynamic makes the set's elements the data plane's, not the
	// compiler's: a Ruleset lists none, Diff never adds or deletes any,
	// String prints none, Trace finds none, and an applier rebuilding the
	// table keeps those the kernel holds (see DNSRule).
	Dynamic bool
	Comment string
	// Elems is sorted by key bytes.
	Elems []Elem
}

// Elem is one set element. Each field of the key is a closed range; a single
// value has From == To.
type Elem struct {
	Key []Range
	// Verdict is the element's value in a verdict map, nil in a set: a
	// pointer, as sets hold far more elements than maps (an element is
	// 32 bytes, not 88). Elements may share one.
	Verdict *Verdict
}

// MapVerdict is the element's value in a verdict map: *e.Verdict, or no
// verdict when it has none.
func (e Elem) MapVerdict() Verdict {
	if e.Verdict == nil {
		return Verdict{}
	}
	return *e.Verdict
}

// Range is a closed range of one key field, as big-endian bytes in strings so
// that elements compare with ==.
type Range struct {
	From, To string
}

// Hook is a netfilter hook a base chain is attached to.
type Hook string

// Hooks weir uses.
const (
	HookPrerouting  Hook = "prerouting"
	HookInput       Hook = "input"
	HookForward     Hook = "forward"
	HookPostrouting Hook = "postrouting"
)

// Base makes a chain a base chain.
type Base struct {
	Type     string // "filter" or "nat"
	Hook     Hook
	Priority int
}

// Chain is a chain and its rules. Chains from a policy carry the policy in
// their name; their rules carry owners.
type Chain struct {
	Name  string
	Base  *Base // nil for a regular chain
	Rules []Rule
}

// Rule is a conjunction of matches followed by a verdict.
type Rule struct {
	Matches []Match
	// Counter names the counter the rule's packets count into, if any.
	Counter string
	// Log, when set, logs the packet (through NFLOG), then the verdict
	// applies; a log rule may have none (the packet goes on).
	Log *Log
	// Mark, when set, rewrites the packet's mark before the verdict; a
	// mark rule may have none (the packet goes on).
	Mark *MarkSet
	// TProxy, when set, hands the packet to a local socket (after Mark):
	// the verdict applies when a socket takes it; with none listening the
	// rule stops there and the packet goes on with the next rule.
	TProxy  *TProxy
	Verdict Verdict
	// Owner says what put the rule there; the rule's comment is rendered
	// from it (Owner.String).
	Owner Owner
}

// CounterValue is what a named counter has counted.
type CounterValue struct {
	Packets, Bytes uint64
}

// MarkSet rewrites the packet mark: the bits of Mask take the values of
// Value (mark = mark &^ Mask | Value; Value has no bit outside Mask).
// iptables' MARK --set-xmark Value/Mask does the same.
type MarkSet struct {
	Mask, Value uint32
}

// TProxy delivers a packet to the local socket listening on Port (on any
// local address, with IP_TRANSPARENT), the packet keeping its destination
// address and port (`tproxy ip to :PORT`, `tproxy ip6 to :PORT`): the
// transparent proxy reads the original destination from its socket. The
// packet must also be routed to the host (a policy route for its mark):
// the agent adds it.
type TProxy struct {
	IPv6 bool
	Port uint16
}

// Log sends a packet to an NFLOG group with a prefix, at most Rate packets
// a second (burst 5) when Rate is not 0.
type Log struct {
	Prefix string
	Group  uint16
	Rate   uint32
}

// Field is a packet field a match reads.
type Field int

// Packet fields.
const (
	FieldIPSaddr Field = iota
	FieldIPDaddr
	FieldIP6Saddr
	FieldIP6Daddr
	FieldL4Proto
	FieldTHDport
	// FieldIifgroup and FieldOifgroup are the link groups of the input and
	// output interfaces (`iifgroup`, `oifgroup`).
	FieldIifgroup
	FieldOifgroup
)

// MatchKind says what a Match tests.
type MatchKind int

// Match kinds.
const (
	// MatchCtState tests the conntrack state against CtStates (any of).
	MatchCtState MatchKind = iota
	// MatchLookup looks the concatenation of Fields up in set Set.
	MatchLookup
	// MatchPort tests the L4 protocol Proto and, unless AllPorts, the
	// destination port range PortFrom-PortTo (`tcp dport 80`). A rule's
	// few port ranges are inline matches; more go to the ports set (see
	// compileRule).
	MatchPort
	// MatchIifname tests that the input interface's name starts with
	// IfPrefix (`iifname "weir*"`), or not when Negate.
	MatchIifname
	// MatchRPFail is the strict reverse-path test failing: the route back
	// to the packet's source does not leave through the interface the
	// packet came in on (`fib saddr . iif oif missing`). See spoof.go.
	MatchRPFail
	// MatchOifname tests that the output interface's name starts with
	// IfPrefix (`oifname "weir*"`), or not when Negate.
	MatchOifname
	// MatchMark tests that every bit of Mark is set in the packet mark
	// (`meta mark & 0x00800000 == 0x00800000`), or not when Negate.
	MatchMark
)

// Conntrack states, as the kernel's bit values.
const (
	CtInvalid     uint32 = 1
	CtEstablished uint32 = 2
	CtRelated     uint32 = 4
	CtNew         uint32 = 8
)

// Match is one test of a rule.
type Match struct {
	Kind     MatchKind
	CtStates uint32
	Fields   []Field
	Set      string
	Negate   bool
	// ID, when non-zero, is the first field of the lookup key: the rule
	// looks up its own elements of a shared set (whose Key starts with
	// TypeID).
	ID uint32

	Proto            uint8
	PortFrom, PortTo uint16
	AllPorts         bool

	// IfPrefix is the interface name prefix of MatchIifname and
	// MatchOifname.
	IfPrefix string

	// Mark holds the bits MatchMark tests.
	Mark uint32
}

// VerdictKind is what a rule or map element does with a packet.
type VerdictKind int

// Verdict kinds.
const (
	// VerdictNone is no verdict: the packet goes on. A log rule (Rule.Log)
	// has none, nor does an element of a set that is not a map.
	VerdictNone VerdictKind = iota
	VerdictAccept
	VerdictDrop
	VerdictJump
	VerdictMasquerade
	// VerdictVMap looks Fields up in the verdict map Map.
	VerdictVMap
	// VerdictReturn ends the chain: evaluation goes on after the rule that
	// jumped to it (in a base chain: the chain's policy).
	VerdictReturn
)

// Verdict is the action of a rule or the value of a map element.
type Verdict struct {
	Kind   VerdictKind
	Chain  string  // VerdictJump
	Map    string  // VerdictVMap
	Fields []Field // VerdictVMap
}

// Set returns the set or map named name.
func (r Ruleset) Set(name string) (Set, bool) {
	i := sort.Search(len(r.Sets), func(i int) bool { return r.Sets[i].Name >= name })
	if i < len(r.Sets) && r.Sets[i].Name == name {
		return r.Sets[i], true
	}
	return Set{}, false
}

// Chain returns the chain named name.
func (r Ruleset) Chain(name string) (Chain, bool) {
	i := sort.Search(len(r.Chains), func(i int) bool { return r.Chains[i].Name >= name })
	if i < len(r.Chains) && r.Chains[i].Name == name {
		return r.Chains[i], true
	}
	return Chain{}, false
}

// Counter returns the counter named name.
func (r Ruleset) Counter(name string) (Counter, bool) {
	i := sort.Search(len(r.Counters), func(i int) bool { return r.Counters[i].Name >= name })
	if i < len(r.Counters) && r.Counters[i].Name == name {
		return r.Counters[i], true
	}
	return Counter{}, false
}

// ID is an element's identity: its key bytes.
func (e Elem) ID() string {
	var b strings.Builder
	for _, k := range e.Key {
		b.WriteString(k.From)
		b.WriteByte(0)
		b.WriteString(k.To)
		b.WriteByte(0)
	}
	return b.String()
}

// SortElems sorts elements by key bytes (the order of ID) and drops
// elements whose key repeats, keeping the first. It sorts in place.
func SortElems(es []Elem) []Elem {
	if !slices.IsSortedFunc(es, compareElems) {
		slices.SortStableFunc(es, compareElems)
	}
	return slices.CompactFunc(es, func(a, b Elem) bool { return compareElems(a, b) == 0 })
}

// compareElems orders elements as their ids compare: fields of one key
// type have one length, so comparing field by field is comparing ids.
//
// Equal fields are skipped with ==, which finds shared memory (the id of
// a group's elements is one string) without reading the bytes.
func compareElems(a, b Elem) int {
	for i := 0; i < len(a.Key) && i < len(b.Key); i++ {
		x, y := a.Key[i], b.Key[i]
		if x == y {
			continue
		}
		if c := strings.Compare(x.From, y.From); c != 0 {
			return c
		}
		if c := strings.Compare(x.To, y.To); c != 0 {
			return c
		}
	}
	return len(a.Key) - len(b.Key)
}

// Size is the number of bytes of one field of type t.
func (t Type) Size() int {
	switch t {
	case TypeIPv4:
		return 4
	case TypeIPv6:
		return 16
	case TypeProto:
		return 1
	case TypeID, TypeGroup:
		return 4
	default:
		return 2
	}
}

func (t Type) String() string {
	switch t {
	case TypeIPv4:
		return "ipv4_addr"
	case TypeIPv6:
		return "ipv6_addr"
	case TypeProto:
		return "inet_proto"
	case TypeID:
		return "integer"
	case TypeGroup:
		return "devgroup"
	default:
		return "inet_service"
	}
}

// typeofString is the expression a shared set is declared with
// (`typeof numgen random mod 1 . ip saddr`): nft has no fixed-size type
// for a plain 32-bit number, so such sets are declared by typeof. An
// address field is declared by its source-address expression whatever the
// rules look up with it (nft only compares the data types).
func (t Type) typeofString() string {
	switch t {
	case TypeIPv4:
		return "ip saddr"
	case TypeIPv6:
		return "ip6 saddr"
	case TypeProto:
		return "meta l4proto"
	case TypeID:
		return "numgen random mod 1"
	case TypeGroup:
		return "meta iifgroup"
	default:
		return "th dport"
	}
}

// IDBytes is id as the big-endian bytes of a TypeID field.
func IDBytes(id uint32) string {
	return string(binary.BigEndian.AppendUint32(nil, id))
}

// PortBytes is p as the big-endian bytes of a TypePort field.
func PortBytes(p uint16) string { return string([]byte{byte(p >> 8), byte(p)}) }
