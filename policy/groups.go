package policy

import (
	"cmp"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/weir-cni/weir/ruleset"
)

// This file keeps the shared sets (peers4/6, blocks4/6, named4/6): each
// holds groups of elements, one group per definition, prefixed by the
// definition's id. A policy's output lists the groups its rules use; the
// Compiler counts the policies using each group and rebuilds a shared set's
// element list only when one of its groups changed.

// setShards is the number of sets each shared set is split into, by id.
// An interval set (blocks4/6, ports) is a pipapo set in the kernel, which
// removes an element by walking the set's ranges from the first
// (nft_pipapo_remove, ≈ 6 µs an element: 2.4 ms at 400 ranges, in the
// commit of every change that drops a group): split, a removal walks one
// shard. A hash set (peers4/6, named4/6) removes in constant time, but the
// Compiler rebuilds the element list of a set one of whose groups changed
// and Diff compares it again: at 50,000 pods peers4 holds 71,000 elements,
// a copy of 6 MB for one pod's change. Split, a change rebuilds one shard.
const setShards = 1 << shardBits

// shardBits is log2 of setShards.
const shardBits = 4

// shardName is the set holding the group of id in shared set set: set
// itself for shard 0, else set-N for shard N (shardOf). Shard 0 always
// exists, as every skeleton set; the others only while they hold a group,
// empty or not (its rules look it up).
func shardName(set string, id uint32) string {
	return nthShard(set, int(shardOf(id)))
}

// nthShard is the name of shard n of set.
func nthShard(set string, n int) string {
	if n == 0 {
		return set
	}
	return set + "-" + strconv.Itoa(n)
}

// shardOf is the shard of id: the top bits of id times the golden ratio
// (Fibonacci hashing), as every bit of the id moves them. The low bits of
// an id, an FNV-1a hash, depend only on the low bits of its definition's
// bytes: ids mod 16 put the dense benchmark's 300 ipBlock groups in 3
// shards.
func shardOf(id uint32) uint32 {
	return (id * 0x9e3779b1) >> (32 - shardBits)
}

// sharedSets returns skeleton set sk (a shared set) with its elements:
// the set itself (shard 0) and its other shards that hold groups.
func (x *Compiler) sharedSets(sk ruleset.Set) []ruleset.Set {
	var out []ruleset.Set
	for n := range setShards {
		shard := sk
		shard.Name, shard.Key = nthShard(sk.Name, n), slices.Clone(sk.Key)
		if n > 0 && len(x.setGroups[shard.Name]) == 0 {
			continue
		}
		shard.Elems = x.sharedElems(shard.Name)
		if !shard.Interval { // pipapo and rbtree sets take no size hint
			shard.Size = x.shardSize(shard.Name, len(shard.Elems))
		}
		out = append(out, shard)
	}
	return out
}

// shardSize is the size shard name of a shared hash set is declared with
// for n elements: hashSize(n), except that a shard keeps a larger size it
// was declared with while n fills more than a quarter of it. A new size is
// a new definition, which Diff turns into a full apply: without the band,
// one pod coming and going at a class boundary would cost a full apply
// each time. Growth is never held back (a set holds at most its size).
func (x *Compiler) shardSize(name string, n int) uint32 {
	want := hashSize(n)
	if have := x.hashSizes[name]; have > want && uint64(n) > uint64(have)/4 {
		return have
	}
	x.hashSizes[name] = want
	return want
}

// groupOut is one group a policy's rules look up: the elements of
// definition def in shared set set (a shard of shared set base), prefixed
// by the definition's id.
type groupOut struct {
	set, base, def string
	id             uint32
	elems          []ruleset.Elem
	// from are the cached results elems were listed from (peerElems),
	// and vers their versions then; none for elements that depend on
	// more.
	from []*podEntry
	vers []uint64
}

// groupKey identifies a group.
type groupKey struct{ set, def string }

// groupRec is a group in use.
type groupRec struct {
	id uint32
	// elems are the latest output's elements (prefixed by the id, sorted):
	// another output with the same list (policies of one Compile call
	// share a definition's) needs no comparison.
	elems []ruleset.Elem
	from  []*podEntry // and their versions: where elems came from
	vers  []uint64
	refs  int
}

// computedFrom tells whether the group's elements were listed from the
// cached results from, at versions vers.
func (rec *groupRec) computedFrom(from []*podEntry, vers []uint64) bool {
	return slices.Equal(rec.from, from) && slices.Equal(rec.vers, vers)
}

// groupElems returns the elements of group g (set, def, id, from and
// vers filled in), listed by elems (prefixed by the id it is given),
// unless the group in use holds them already: its list when it was
// listed from g.from at g.vers, or when it holds the same keys. The memo
// hands that list to every policy of the Compile call using the group,
// which useGroups then takes without comparing the elements again.
func (x *Compiler) groupElems(g groupOut, elems func(id uint32) []ruleset.Elem) []ruleset.Elem {
	rec := x.groups[groupKey{g.set, g.def}]
	if rec != nil && g.from != nil && rec.computedFrom(g.from, g.vers) {
		return rec.elems
	}
	out := elems(g.id)
	if rec != nil && slices.EqualFunc(rec.elems, out, sameKey) {
		return rec.elems
	}
	return out
}

// versions returns the versions of entries.
func versions(entries []*podEntry) []uint64 {
	if entries == nil {
		return nil
	}
	return versionsInto(make([]uint64, 0, len(entries)), entries)
}

// versionsInto appends the versions of entries to out.
func versionsInto(out []uint64, entries []*podEntry) []uint64 {
	for _, e := range entries {
		out = append(out, e.ver)
	}
	return out
}

// defID returns the id of definition def: a hash of def, probing past ids
// another definition holds (so an id depends on history only after a
// 32-bit collision). The id stays reserved while a group uses it; ids
// nobody uses are released by releaseIDs.
func (x *Compiler) defID(def string) uint32 {
	if id, ok := x.ids[def]; ok {
		return id
	}
	h := fnv.New32a()
	h.Write([]byte(def))
	id := h.Sum32()
	for {
		if id == 0 {
			id = 1 // 0 means "no id" in a Match
		}
		if _, taken := x.idOwner[id]; !taken {
			break
		}
		id++
	}
	x.ids[def], x.idOwner[id] = id, def
	x.idTouched = append(x.idTouched, def)
	return id
}

// useGroups counts the groups of a new policy output in (add) or of a
// replaced one out. A new output whose group holds the elements of the
// group in use takes that list (the shared sets hold its keys), else the
// group takes the output's.
func (x *Compiler) useGroups(gs []groupOut, add bool) {
	for i, g := range gs {
		k := groupKey{g.set, g.def}
		rec := x.groups[k]
		switch {
		case add && rec == nil:
			rec = &groupRec{id: g.id, elems: g.elems, from: g.from, vers: g.vers, refs: 1}
			x.groups[k] = rec
			x.setStale[g.set] = true
			if x.setGroups[g.set] == nil {
				x.setGroups[g.set] = map[*groupRec]struct{}{}
			}
			x.setGroups[g.set][rec] = struct{}{}
			x.defGroups[g.def]++
		case add:
			rec.refs++
			switch {
			case sameSlice(rec.elems, g.elems):
			case slices.EqualFunc(rec.elems, g.elems, sameKey):
				gs[i].elems = rec.elems
			default:
				rec.elems = g.elems
				x.setStale[g.set] = true
			}
			rec.from, rec.vers = g.from, g.vers // the latest listing, equal or not
		case rec != nil:
			if rec.refs--; rec.refs == 0 {
				delete(x.groups, k)
				x.setStale[g.set] = true
				if delete(x.setGroups[g.set], rec); len(x.setGroups[g.set]) == 0 {
					delete(x.setGroups, g.set)
					delete(x.hashSizes, g.set)
				}
				if x.defGroups[g.def]--; x.defGroups[g.def] == 0 {
					delete(x.defGroups, g.def)
				}
				x.idTouched = append(x.idTouched, g.def)
			}
		}
	}
}

// releaseIDs forgets the ids of definitions no group uses any more.
func (x *Compiler) releaseIDs() {
	if len(x.idTouched) == 0 {
		return
	}
	for _, def := range x.idTouched {
		if id, ok := x.ids[def]; ok && x.defGroups[def] == 0 {
			delete(x.ids, def)
			delete(x.idOwner, id)
		}
	}
	x.idTouched = x.idTouched[:0]
}

// sharedElems returns the elements of shared set (or shard) name,
// rebuilding first every shared set one of whose groups changed.
func (x *Compiler) sharedElems(name string) []ruleset.Elem {
	if len(x.setStale) > 0 {
		x.rebuildShared()
	}
	return x.shared[name]
}

// rebuildShared rebuilds the element lists of the stale shared sets:
// their groups in id order, each sorted, which is the order of key bytes
// since the id comes first.
func (x *Compiler) rebuildShared() {
	for name := range x.setStale {
		list, n := make([]*groupRec, 0, len(x.setGroups[name])), 0
		for rec := range x.setGroups[name] {
			list = append(list, rec)
		}
		slices.SortFunc(list, func(a, b *groupRec) int { return cmp.Compare(a.id, b.id) })
		for _, rec := range list {
			n += len(rec.elems)
		}
		var out []ruleset.Elem // nil when empty, as in a fresh Compiler
		if n > 0 {
			out = make([]ruleset.Elem, 0, n)
		}
		for _, rec := range list {
			out = append(out, rec.elems...)
		}
		x.shared[name] = out
	}
	clear(x.setStale)
}

// prefixElems returns elems (sorted) with id as a first field.
func prefixElems(id uint32, elems []ruleset.Elem) []ruleset.Elem {
	idr := ruleset.IDBytes(id)
	out := make([]ruleset.Elem, len(elems))
	keys := make([]ruleset.Range, 0, len(elems)*(1+elemWidth(elems)))
	for i, e := range elems {
		start := len(keys)
		keys = append(keys, ruleset.Range{From: idr, To: idr})
		keys = append(keys, e.Key...)
		out[i] = ruleset.Elem{Key: keys[start:len(keys):len(keys)]}
	}
	return out
}

func elemWidth(elems []ruleset.Elem) int {
	if len(elems) == 0 {
		return 0
	}
	return len(elems[0].Key)
}

// sameSlice tells whether a and b are the same slice: same array, same
// length.
func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// sameKey tells whether the set elements a and b have the same key.
func sameKey(a, b ruleset.Elem) bool { return slices.Equal(a.Key, b.Key) }

// defKey joins the parts of a definition into its key, each prefixed by
// its length so that no two part lists give one key.
func defKey(kind string, parts ...string) string {
	size := len(kind)
	for _, p := range parts {
		size += len(p) + 2 + 20 // a space, a colon and at most 20 digits
	}
	var (
		b   strings.Builder
		num [20]byte
	)
	b.Grow(size) // the key's one allocation
	b.WriteString(kind)
	for _, p := range parts {
		b.WriteByte(' ')
		b.Write(strconv.AppendInt(num[:0], int64(len(p)), 10))
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
}
