package cluster

import (
	"os"
	"path/filepath"
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
		{"a cluster binary with arguments counts", clone(func(h *HostState) { h.Procs = append(h.Procs, "42 /cache/kubelet-v1 --config /k/c.yaml") }), false, "42 /cache/kubelet-v1 --config"},
		{"a node's holder left counts", clone(func(h *HostState) { h.Procs = append(h.Procs, "44 /usr/bin/sleep infinity") }), false, "44 /usr/bin/sleep infinity"},
		{"a sleep of someone polling beside the run does not", clone(func(h *HostState) { h.Procs = append(h.Procs, "45 /usr/bin/sleep 240") }), true, "1 new processes of others"},
		{"nor a binary whose name only starts like a cluster one", clone(func(h *HostState) { h.Procs = append(h.Procs, "46 /cache/kubelet-v1-old") }), true, "1 new processes of others"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			report, clean := CompareHost(base, c.after, []string{"/cache/kubelet-v1", "/usr/bin/sleep infinity"})
			if clean != c.clean {
				t.Errorf("clean = %v, want %v\n%s", clean, c.clean, report)
			}
			if !strings.Contains(report, c.want) {
				t.Errorf("report lacks %q:\n%s", c.want, report)
			}
		})
	}
}

func TestProcLine(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct{ name, exe, cmdline, want string }{
		{"arguments after argv[0]", "/usr/bin/sleep", "sleep\x00infinity\x00", "7 /usr/bin/sleep infinity"},
		{"no arguments", "/usr/bin/sleep", "sleep\x00", "7 /usr/bin/sleep"},
		// argv[0] is whatever the process was started as; the line names its executable
		{"several", "/var/tmp/weir-e2e/bin/kubelet", "kubelet\x00--v=2\x00--config\x00/k\x00", "7 /var/tmp/weir-e2e/bin/kubelet --v=2 --config /k"},
	} {
		if got := procLine("7", c.exe, write(c.name, c.cmdline)); got != c.want {
			t.Errorf("%s: procLine = %q, want %q", c.name, got, c.want)
		}
	}
	if got := procLine("7", "/usr/bin/sleep", filepath.Join(dir, "gone")); got != "7 /usr/bin/sleep" {
		t.Errorf("a process gone meanwhile: procLine = %q, want its executable alone", got)
	}
}
