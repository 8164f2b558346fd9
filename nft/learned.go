package nft

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/weir-cni/weir/ruleset"
)

// This file touches the kernel: it reads the elements the data plane
// added to the Dynamic sets (see ruleset.Set.Dynamic), for a full apply to
// add them again.

// readLearned reads, through the query connection, the elements of the
// sets of dynamic that the table holds with the same key type, by set
// name, each to be added again with the time it has left as its timeout.
// A table or set the kernel does not hold has none.
func (a *NetlinkApplier) readLearned(ctx context.Context, dynamic []ruleset.Set) (map[string][]nftables.SetElement, error) {
	out := map[string][]nftables.SetElement{}
	err := a.query(ctx, func(c *nftables.Conn) error {
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			return fmt.Errorf("list tables: %w", err)
		}
		if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == ruleset.TableName }) {
			return nil // google/nftables v0.3.0 hides the errno of a missing table
		}
		sets, err := c.GetSets(weirTable)
		if err != nil {
			return fmt.Errorf("list sets: %w", err)
		}
		for _, s := range dynamic {
			i := slices.IndexFunc(sets, func(k *nftables.Set) bool { return k.Name == s.Name })
			if i < 0 || !sameKey(sets[i], kernelSet(s)) {
				continue
			}
			els, err := c.GetSetElements(sets[i])
			if err != nil {
				return fmt.Errorf("read elements of set %s: %w", s.Name, err)
			}
			out[s.Name] = carried(els, s.Size)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read learned elements: %w", err)
	}
	return out, nil
}

// sameKey tells whether the kernel's set k has the key type of set s.
func sameKey(k, s *nftables.Set) bool {
	return k.KeyType.Name == s.KeyType.Name && k.KeyType.Bytes == s.KeyType.Bytes
}

// minCarried is the least time left an element is carried over with: one
// about to expire is let go.
const minCarried = time.Millisecond

// carried returns the elements to add again: each with the time it has
// left as its timeout (none for one without a timeout), the ones about to
// expire left out, at most size (when not 0) of those with the most time
// left.
func carried(els []nftables.SetElement, size uint32) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(els))
	for _, e := range els {
		el := nftables.SetElement{Key: e.Key}
		if e.Timeout > 0 {
			if e.Expires < minCarried {
				continue
			}
			el.Timeout = e.Expires
		}
		out = append(out, el)
	}
	if size > 0 && len(out) > int(size) {
		slices.SortStableFunc(out, func(a, b nftables.SetElement) int { return cmp.Compare(timeLeft(b), timeLeft(a)) })
		out = out[:size]
	}
	return out
}

// timeLeft is the time an element to carry over has left; one without a
// timeout never expires.
func timeLeft(e nftables.SetElement) time.Duration {
	if e.Timeout == 0 {
		return math.MaxInt64
	}
	return e.Timeout
}
