//go:build integration

package main

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/internal/testkit"
)

// await returns once a commit puts the element in the set, with the time
// its commit message arrived, not later than the bench's next read; and
// it waits while commits leave the set as it was.
func TestGenerationsAwaitTheCommit(t *testing.T) {
	n := testkit.NewTestNS(t, "weirt-gen-")
	fd, err := unix.Open(n.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	table := c.AddTable(&nftables.Table{Name: "gen", Family: nftables.TableFamilyINet})
	set := &nftables.Set{Table: table, Name: "s", KeyType: nftables.TypeIPAddr}
	if err := c.AddSet(set, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	g, err := listenGenerations(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	ip := netip.MustParseAddr("10.9.9.9")
	present := func() (bool, error) {
		els, err := c.GetSetElements(set)
		for _, e := range els {
			if a, ok := netip.AddrFromSlice(e.Key); ok && a == ip {
				return true, err
			}
		}
		return false, err
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		// A commit that changes nothing the bench waits for.
		c.AddChain(&nftables.Chain{Table: table, Name: "other"})
		_ = c.Flush()
		time.Sleep(50 * time.Millisecond)
		_ = c.SetAddElements(set, []nftables.SetElement{{Key: ip.AsSlice()}})
		_ = c.Flush()
	}()
	start := time.Now()
	// A fallback longer than the test: only commit messages wake await.
	at, err := g.await(context.Background(), present, true, start, 10*time.Second, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if at.Sub(start) < 100*time.Millisecond {
		t.Errorf("await returned %v after the start, before the element's commit", at.Sub(start))
	}
	if time.Since(at) > 5*time.Second {
		t.Errorf("await's time %v is long past", at)
	}
}
