package cluster

import (
	"strings"
	"testing"
)

func TestCompareHost(t *testing.T) {
	base := HostState{
		Netns: []string{"a"}, Links: []string{"1: lo"}, Routes: []string{"default via 192.0.2.1"},
		Mounts: []string{"/ ext4"}, Procs: []string{"1 /sbin/init"}, Sysctls: map[string]string{"vm/overcommit_memory": "0"},
	}
	clone := func(f func(*HostState)) HostState {
		h := base
		h.Netns = append([]string(nil), base.Netns...)
		h.Routes = append([]string(nil), base.Routes...)
		h.Procs = append([]string(nil), base.Procs...)
		h.Sysctls = map[string]string{"vm/overcommit_memory": "0"}
		f(&h)
		return h
	}
	cases := []struct {
		name  string
		after HostState
		clean bool
		want  string
	}{
		{"nothing changed", clone(func(*HostState) {}), true, "unchanged"},
		{"a leftover namespace counts", clone(func(h *HostState) { h.Netns = append(h.Netns, "weir-e2e-n1") }), false, "+ weir-e2e-n1"},
		{"a route added in the root namespace counts", clone(func(h *HostState) { h.Routes = append(h.Routes, "10.244.1.0/24 via 10.89.0.12") }), false, "+ 10.244.1.0/24"},
		{"a sysctl left changed counts", clone(func(h *HostState) { h.Sysctls["vm/overcommit_memory"] = "1" }), false, "vm/overcommit_memory=1"},
		{"a cluster process still running counts", clone(func(h *HostState) { h.Procs = append(h.Procs, "42 /cache/kubelet-v1") }), false, "42 /cache/kubelet-v1"},
		{"someone else's new process does not", clone(func(h *HostState) { h.Procs = append(h.Procs, "43 /usr/bin/vim") }), true, "1 new processes of others"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			report, clean := CompareHost(base, c.after, []string{"/cache/kubelet-v1"})
			if clean != c.clean {
				t.Errorf("clean = %v, want %v\n%s", clean, c.clean, report)
			}
			if !strings.Contains(report, c.want) {
				t.Errorf("report lacks %q:\n%s", c.want, report)
			}
		})
	}
}
