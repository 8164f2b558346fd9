package ipam

import (
	"fmt"
	"testing"
)

// BenchmarkAllocateRelease measures one pod's ADD + DEL worth of IPAM work
// (dual-stack): Open, Allocate, Close, then Open, Release, Close, as the
// plugin does per invocation, against stores already holding some pods.
func BenchmarkAllocateRelease(b *testing.B) {
	ranges := rngs(b, "10.0.0.0/16", "fd00::/64")
	for _, pods := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("disk/pods=%d", pods), func(b *testing.B) {
			dir := b.TempDir()
			m, err := Open(dir, "net1")
			if err != nil {
				b.Fatal(err)
			}
			for i := range pods {
				if _, err := m.Allocate(Attachment{ContainerID: fmt.Sprintf("held%d", i), IfName: "eth0"}, ranges, nil); err != nil {
					b.Fatal(err)
				}
			}
			m.Close()
			b.ResetTimer()
			for i := range b.N {
				a := Attachment{ContainerID: fmt.Sprintf("bench%d", i), IfName: "eth0"}
				m, err := Open(dir, "net1")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := m.Allocate(a, ranges, nil); err != nil {
					b.Fatal(err)
				}
				m.Close()
				if m, err = Open(dir, "net1"); err != nil {
					b.Fatal(err)
				}
				if err := m.Release(a); err != nil {
					b.Fatal(err)
				}
				m.Close()
			}
		})
	}
	b.Run("memory", func(b *testing.B) {
		m := New(NewMemStore())
		for i := range b.N {
			a := Attachment{ContainerID: fmt.Sprintf("bench%d", i), IfName: "eth0"}
			if _, err := m.Allocate(a, ranges, nil); err != nil {
				b.Fatal(err)
			}
			if err := m.Release(a); err != nil {
				b.Fatal(err)
			}
		}
	})
}
