package policy

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// This file compiles policies at once: each policy's rules, chains and
// groups are its own, built from the snapshot's pods and the Compiler's
// indexes, which no policy changes. What the policies share (the parsed
// selectors, the cached results and their users: see selectors.go; the
// definitions' ids, the groups computed in this call, and which policies
// use every pod, named ports or nodes: below) a policyBuilder reads and
// fills under x.mu. The output does not depend on the order: a cached
// result or a group is the same whoever computes it first.

// compileWholes compiles every policy of list whole, on up to GOMAXPROCS
// goroutines, and returns their outputs in list's order.
func (x *Compiler) compileWholes(list []*policyState) []policyOut {
	for _, ps := range list {
		x.unregister(ps) // the cached results' users are shared
	}
	outs := make([]policyOut, len(list))
	workers := min(runtime.GOMAXPROCS(0), len(list))
	if workers <= 1 {
		for i, ps := range list {
			outs[i] = x.compileWhole(ps)
		}
		return outs
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(list); i = int(next.Add(1) - 1) {
				outs[i] = x.compileWhole(list[i])
			}
		})
	}
	wg.Wait()
	return outs
}

// defID is Compiler.defID under x.mu.
func (c *policyBuilder) defID(def string) uint32 {
	c.x.mu.Lock()
	defer c.x.mu.Unlock()
	return c.x.defID(def)
}

// memo returns the group of key k computed in this Compile call, if any.
func (c *policyBuilder) memo(k groupKey) (groupOut, bool) {
	c.x.mu.Lock()
	defer c.x.mu.Unlock()
	g, ok := c.x.groupMemo[k]
	return g, ok
}

// keepMemo records g, of key k, as computed in this Compile call, and
// returns it, or the group another policy recorded first (equal to g).
func (c *policyBuilder) keepMemo(k groupKey, g groupOut) groupOut {
	c.x.mu.Lock()
	defer c.x.mu.Unlock()
	if first, ok := c.x.groupMemo[k]; ok {
		return first
	}
	c.x.groupMemo[k] = g
	return g
}

// uses records that the policy is one of users (x.allUsers, x.portUsers
// or x.nodeUsers).
func (c *policyBuilder) uses(users map[*policyState]struct{}) {
	c.x.mu.Lock()
	defer c.x.mu.Unlock()
	users[c.ps] = struct{}{}
}
