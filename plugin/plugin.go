// Package plugin implements the weir CNI plugin: ADD, DEL, CHECK, STATUS and
// GC for one routed veth per pod. It touches the kernel (netlink, sysctls)
// and the IPAM store on disk; it never talks to the API server.
package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/conf"
	"github.com/weir-cni/weir/ipam"
)

// ErrAttachmentExists is weir's own error code (the spec leaves 100+ to
// plugins): ADD for a (container ID, ifname) that is already wired.
const ErrAttachmentExists uint = 100

// AliasPrefix marks host veths weir made; GC finds them by it.
const AliasPrefix = "weir:"

// hostMAC is the address of every host-side veth. Pods reach their gateway
// through a permanent neighbour entry pointing at it, so it never needs to
// be unique (the same trick Calico uses).
var hostMAC = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}

// Funcs returns the CNI entry points for skel.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, Status: cmdStatus, GC: cmdGC}
}

// load parses stdin and CNI_ARGS for the commands after ADD, mapping
// problems to CNI errors.
func load(args *skel.CmdArgs) (*conf.NetConf, error) {
	return loaded(conf.LoadExisting(args.StdinData, args.Args))
}

// loadForAdd is load for ADD, which also reads and checks the addresses
// the pod asks for.
func loadForAdd(args *skel.CmdArgs) (*conf.NetConf, error) {
	return loaded(conf.Load(args.StdinData, args.Args))
}

func loaded(c *conf.NetConf, err error) (*conf.NetConf, error) {
	if err != nil {
		return nil, conf.CNI(err)
	}
	return c, nil
}

// HostVethName is the deterministic host-side name of an attachment, so DEL
// finds it without the pod namespace.
func HostVethName(prefix, containerID, ifname string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifname))
	return prefix + hex.EncodeToString(sum[:])[:15-len(prefix)]
}

// alias marks a host veth with its network and attachment. Network names,
// container IDs and interface names cannot contain "/", so it splits back.
func alias(network, containerID, ifname string) string {
	return AliasPrefix + network + "/" + containerID + "/" + ifname
}

// parseAlias is the inverse of alias; ok is false for links weir did not make.
func parseAlias(s string) (network string, a ipam.Attachment, ok bool) {
	rest, found := strings.CutPrefix(s, AliasPrefix)
	if !found {
		return "", ipam.Attachment{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", ipam.Attachment{}, false
	}
	return parts[0], ipam.Attachment{ContainerID: parts[1], IfName: parts[2]}, true
}

func openIPAM(c *conf.NetConf) (*ipam.IPAM, error) {
	m, err := ipam.Open(c.DataDir, c.Name)
	if err != nil {
		return nil, types.NewError(types.ErrIOFailure, "open address store", err.Error())
	}
	return m, nil
}

// openNetNS opens the pod's namespace, refusing anything that is not a
// network namespace (another kind of namespace, a procfs or plain file)
// and the plugin's own.
func openNetNS(path string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("open netns %q", path), err.Error())
	}
	if err := isNetNS(int(h)); err != nil {
		h.Close()
		return netns.None(), types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("%q is not a network namespace", path), err.Error())
	}
	self, err := netns.Get()
	if err == nil {
		defer self.Close()
		if self.Equal(h) {
			h.Close()
			return netns.None(), types.NewError(types.ErrInvalidNetNS,
				fmt.Sprintf("netns %q is the plugin's own namespace", path), "")
		}
	}
	return h, nil
}

// isNetNS asks the kernel (NS_GET_NSTYPE, Linux 4.11+) what fd is: only a
// namespace file answers, and it answers with its kind.
func isNetNS(fd int) error {
	kind, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("ask namespace type: %w", err)
	}
	if kind != unix.CLONE_NEWNET {
		return fmt.Errorf("namespace type %#x, want CLONE_NEWNET %#x", kind, unix.CLONE_NEWNET)
	}
	return nil
}

// ipamError maps allocator failures to CNI codes.
func ipamError(err error) error {
	switch {
	case errors.Is(err, ipam.ErrExhausted):
		return types.NewError(types.ErrTryAgainLater, "no free address", err.Error())
	case errors.Is(err, ipam.ErrUnavailable):
		return types.NewError(types.ErrTryAgainLater, "requested address is in use", err.Error())
	}
	return types.NewError(types.ErrIOFailure, "allocate address", err.Error())
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
