package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// HostState is what the cluster must leave as it found it in the
// machine's own namespaces.
type HostState struct {
	Netns   []string `json:"netns"`
	Links   []string `json:"links"`
	Addrs   []string `json:"addrs"`
	Routes  []string `json:"routes"`
	Nft     []string `json:"nft"`
	Mounts  []string `json:"mounts"`
	Cgroups []string `json:"cgroups"`
	// Procs are the running processes, as "pid exe" and their arguments
	// after argv[0], if any, each after a space.
	Procs []string `json:"procs"`
	// Sysctls the kubelet tunes on start (not per network namespace).
	Sysctls map[string]string `json:"sysctls"`
}

// kubeletSysctls are the machine-wide sysctls a kubelet sets at start;
// RestoreSysctls puts them back.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// SnapshotHost reads the machine's own network namespace (links,
// addresses, routes of every table, the nftables ruleset without
// counters), the named network namespaces, mounts, top-level cgroups,
// processes and the kubelet's sysctls.
func SnapshotHost() (HostState, error) {
	var h HostState
	var err error
	lines := func(args ...string) []string {
		if err != nil {
			return nil
		}
		out, e := exec.Command(args[0], args[1:]...).Output()
		if e != nil {
			err = fmt.Errorf("%s: %w", strings.Join(args, " "), e)
			return nil
		}
		return nonEmpty(string(out))
	}
	h.Netns = lines("ip", "netns", "list")
	h.Links = lines("ip", "-o", "link", "show")
	h.Addrs = stripAddrVolatile(lines("ip", "-o", "addr", "show"))
	h.Routes = append(lines("ip", "-4", "route", "show", "table", "all"), lines("ip", "-6", "route", "show", "table", "all")...)
	h.Nft = lines("nft", "-s", "list", "ruleset")
	if err != nil {
		return h, err
	}
	b, e := os.ReadFile("/proc/self/mountinfo")
	if e != nil {
		return h, fmt.Errorf("read mountinfo: %w", e)
	}
	for _, l := range nonEmpty(string(b)) {
		f := strings.Fields(l)
		if len(f) > 5 {
			h.Mounts = append(h.Mounts, f[4]+" "+strings.Join(f[len(f)-3:], " "))
		}
	}
	sort.Strings(h.Mounts)
	for _, hier := range cgroupHierarchies() {
		ents, _ := os.ReadDir(hier)
		for _, e := range ents {
			if e.IsDir() {
				h.Cgroups = append(h.Cgroups, filepath.Join(hier, e.Name()))
			}
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil {
			h.Procs = append(h.Procs, procLine(e.Name(), exe, "/proc/"+e.Name()+"/cmdline"))
		}
	}
	h.Sysctls = map[string]string{}
	for _, s := range kubeletSysctls {
		if v, err := os.ReadFile("/proc/sys/" + s); err == nil {
			h.Sysctls[s] = strings.TrimSpace(string(v))
		}
	}
	return h, nil
}

// procLine is Procs' line of process pid running exe, whose command line
// (NUL-separated, as the kernel shows it) is in file cmdline.
func procLine(pid, exe, cmdline string) string {
	line := pid + " " + exe
	b, _ := os.ReadFile(cmdline) // gone meanwhile: its executable alone
	if args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"); len(args) > 1 {
		line += " " + strings.Join(args[1:], " ")
	}
	return line
}

func nonEmpty(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// stripAddrVolatile drops the lifetimes of dynamic addresses.
func stripAddrVolatile(ls []string) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		if i := strings.Index(l, "valid_lft"); i >= 0 {
			l = l[:i]
		}
		out = append(out, strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(l), "\\")))
	}
	return out
}

// SaveHost writes a snapshot to path.
func SaveHost(path string, h HostState) error {
	if err := writeJSON(path, h, 0o644); err != nil {
		return fmt.Errorf("host snapshot: %w", err)
	}
	return nil
}

// LoadHost reads a snapshot written by SaveHost.
func LoadHost(path string) (HostState, error) {
	var h HostState
	if err := readJSON(path, &h); err != nil {
		return h, fmt.Errorf("host snapshot: %w", err)
	}
	return h, nil
}

// RestoreSysctls writes back the kubelet-tuned sysctls of before.
func RestoreSysctls(before HostState) error {
	for k, v := range before.Sysctls {
		cur, err := os.ReadFile("/proc/sys/" + k)
		if err == nil && strings.TrimSpace(string(cur)) == v {
			continue
		}
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			return fmt.Errorf("restore %s=%s: %w", k, v, err)
		}
	}
	return nil
}

// CompareHost returns a report of every difference between two snapshots
// and whether any of them counts: a namespace, link, address, route,
// nftables rule, mount, cgroup or sysctl that differs, or a process of
// the cluster's still running: one whose executable is one of clusterProcs,
// or whose executable and arguments are one of them ("/usr/bin/sleep
// infinity", a node's holder, not any sleep of someone polling beside the
// run). Processes that merely came or went are counted for information.
func CompareHost(before, after HostState, clusterProcs []string) (report string, clean bool) {
	var b strings.Builder
	clean = true
	section := func(name string, x, y []string, counts bool) {
		gone, added := diffLines(x, y)
		if len(gone)+len(added) == 0 {
			fmt.Fprintf(&b, "  %-8s unchanged (%d)\n", name, len(y))
			return
		}
		if counts {
			clean = false
		}
		fmt.Fprintf(&b, "  %-8s CHANGED\n", name)
		for _, l := range gone {
			fmt.Fprintf(&b, "    - %s\n", l)
		}
		for _, l := range added {
			fmt.Fprintf(&b, "    + %s\n", l)
		}
	}
	section("netns", before.Netns, after.Netns, true)
	section("links", before.Links, after.Links, true)
	section("addrs", before.Addrs, after.Addrs, true)
	section("routes", before.Routes, after.Routes, true)
	section("nftables", before.Nft, after.Nft, true)
	section("mounts", before.Mounts, after.Mounts, true)
	section("cgroups", before.Cgroups, after.Cgroups, true)
	var sb, sa []string
	for k, v := range before.Sysctls {
		sb = append(sb, k+"="+v)
	}
	for k, v := range after.Sysctls {
		sa = append(sa, k+"="+v)
	}
	sort.Strings(sb)
	sort.Strings(sa)
	section("sysctls", sb, sa, true)
	_, added := diffLines(before.Procs, after.Procs)
	var ours []string
	for _, p := range added {
		_, cmd, _ := strings.Cut(p, " ")
		for _, c := range clusterProcs {
			if c != "" && (cmd == c || strings.HasPrefix(cmd, c+" ") && !strings.Contains(c, " ")) {
				ours = append(ours, p)
				break
			}
		}
	}
	if len(ours) > 0 {
		clean = false
		fmt.Fprintf(&b, "  procs    CHANGED: the cluster's processes still run:\n")
		for _, p := range ours {
			fmt.Fprintf(&b, "    + %s\n", p)
		}
	} else {
		fmt.Fprintf(&b, "  procs    none of the cluster's processes left (%d new processes of others)\n", len(added))
	}
	return b.String(), clean
}

func diffLines(x, y []string) (gone, added []string) {
	in := func(s []string) map[string]int {
		m := map[string]int{}
		for _, l := range s {
			m[l]++
		}
		return m
	}
	mx, my := in(x), in(y)
	for _, l := range x {
		if my[l] == 0 {
			gone = append(gone, l)
		} else {
			my[l]--
		}
	}
	for _, l := range y {
		if mx[l] == 0 {
			added = append(added, l)
		} else {
			mx[l]--
		}
	}
	return gone, added
}
