package testkit

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NetnsDir is where iproute2 keeps named network namespaces.
const NetnsDir = "/var/run/netns"

// NS is a named network namespace created by NewNS.
type NS struct {
	ns.NetNS
	Name string
}

// NewNS creates a network namespace named prefix + 8 random hex characters
// (visible to `ip netns`), with its loopback up.
func NewNS(prefix string) (*NS, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random netns name: %w", err)
	}
	return NewNamedNS(prefix + hex.EncodeToString(b))
}

// NewNamedNS creates the network namespace name, with its loopback up.
func NewNamedNS(name string) (*NS, error) {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	h, err := ns.GetNS(filepath.Join(NetnsDir, name))
	if err != nil {
		_ = deleteNamed(name)
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	n := &NS{NetNS: h, Name: name}
	if err := n.Do(func(ns.NetNS) error { return linkUp("lo") }); err != nil {
		_ = n.Delete()
		return nil, err
	}
	return n, nil
}

// Delete closes and removes the namespace. Links inside it go with it.
func (n *NS) Delete() error {
	return errors.Join(n.Close(), deleteNamed(n.Name))
}

func deleteNamed(name string) error {
	if _, err := os.Stat(filepath.Join(NetnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns delete %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// AddAddrs puts addrs (CIDR strings such as "10.99.0.1/32") on the
// namespace's loopback, so the namespace has addresses of its own that pods
// can reach. (Loopback rather than a dummy link: not every kernel has the
// dummy module.)
func (n *NS) AddAddrs(addrs ...string) error {
	return n.Do(func(ns.NetNS) error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		for _, a := range addrs {
			addr, err := netlink.ParseAddr(a)
			if err != nil {
				return fmt.Errorf("parse address %s: %w", a, err)
			}
			addr.Flags |= unix.IFA_F_NODAD
			if err := netlink.AddrAdd(lo, addr); err != nil {
				return fmt.Errorf("add address %s to lo: %w", a, err)
			}
		}
		return nil
	})
}
