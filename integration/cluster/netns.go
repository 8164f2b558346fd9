package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
)

func withNetns(path string, f func() error) error {
	return ns.WithNetNSPath(path, func(ns.NetNS) error { return f() })
}

// underlay makes the namespaces and the network joining them: a bridge in
// the control plane's namespace holding its address, and one veth per
// node (and one for the outside host) enslaved to it. Nodes route by
// default through the control plane, which plays the uplink router.
func (c *Cluster) underlay(ctx context.Context) error {
	bits := c.Underlay.Bits()
	names := []string{c.CPNetns, c.ExtNetns}
	for _, n := range c.Nodes {
		names = append(names, n.Netns)
	}
	for _, name := range names {
		if _, err := os.Stat("/run/netns/" + name); err == nil {
			return fmt.Errorf("network namespace %s already exists (a cluster not torn down? run with --down)", name)
		}
		if _, err := (where{}).run(ctx, "ip", "netns", "add", name); err != nil {
			return err
		}
		if err := c.state.update(func(s *State) { s.Netns = append(s.Netns, name) }); err != nil {
			return err
		}
		if _, err := (where{netns: name}).run(ctx, "ip", "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	cp := where{netns: c.CPNetns}
	cmds := [][]string{
		{"ip", "link", "add", "ul0", "type", "bridge"},
		{"ip", "addr", "add", fmt.Sprintf("%s/%d", c.CPIP, bits), "dev", "ul0"},
		{"ip", "link", "set", "ul0", "up"},
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}
	for _, a := range cmds {
		if _, err := cp.run(ctx, a[0], a[1:]...); err != nil {
			return err
		}
	}
	type host struct {
		netns, port string
		ip          fmt.Stringer
	}
	hosts := []host{{c.ExtNetns, "ext", c.ExtIP}}
	for i, n := range c.Nodes {
		hosts = append(hosts, host{n.Netns, "n" + strconv.Itoa(i+1), n.IP})
	}
	for _, h := range hosts {
		// The veth is made in the control plane's namespace and its far
		// end moved into the host's: nothing passes through the root
		// namespace.
		steps := [][]string{
			{"ip", "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.netns},
			{"ip", "link", "set", h.port, "master", "ul0"},
			{"ip", "link", "set", h.port, "up"},
		}
		for _, a := range steps {
			if _, err := cp.run(ctx, a[0], a[1:]...); err != nil {
				return err
			}
		}
		w := where{netns: h.netns}
		for _, a := range [][]string{
			{"ip", "addr", "add", fmt.Sprintf("%s/%d", h.ip, bits), "dev", "eth0"},
			{"ip", "link", "set", "eth0", "up"},
			{"ip", "route", "add", "default", "via", c.CPIP.String()},
		} {
			if _, err := w.run(ctx, a[0], a[1:]...); err != nil {
				return err
			}
		}
	}
	return nil
}

// cgroupHierarchies lists the mounted cgroup v1 hierarchies (and the v2
// one of a hybrid layout).
func cgroupHierarchies() []string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && (f[2] == "cgroup" || f[2] == "cgroup2") && strings.HasPrefix(f[1], "/sys/fs/cgroup") {
			out = append(out, f[1])
		}
	}
	return out
}

// makeCgroupRoot makes root ("/weir-e2e-n1") in every hierarchy: a
// kubelet's cgroupRoot must exist in all of them. cpuset children need
// their parent's cpus and mems.
func makeCgroupRoot(root string) error {
	for _, h := range cgroupHierarchies() {
		dir := filepath.Join(h, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("make cgroup %s: %w", dir, err)
		}
		if filepath.Base(h) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return fmt.Errorf("read %s: %w", f, err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return fmt.Errorf("write %s/%s: %w", dir, f, err)
				}
			}
		}
	}
	return nil
}

// cgroupPids lists the processes in root's subtree (of the pids or
// memory hierarchy, whichever is mounted).
func cgroupPids(root string) []int {
	var out []int
	seen := map[int]bool{}
	for _, h := range cgroupHierarchies() {
		base := filepath.Base(h)
		if base != "pids" && base != "memory" && base != "freezer" {
			continue
		}
		_ = filepath.WalkDir(filepath.Join(h, root), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] && !zombie(pid) {
					seen[pid] = true
					out = append(out, pid)
				}
			}
			return nil
		})
	}
	return out
}

// removeCgroupRoot removes root's subtree in every hierarchy, deepest
// first (cgroup directories are removed with rmdir only).
func removeCgroupRoot(root string) error {
	var errs []string
	for _, h := range cgroupHierarchies() {
		top := filepath.Join(h, root)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove cgroup %s: %s", root, strings.Join(errs, "; "))
	}
	return nil
}
