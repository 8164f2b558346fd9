package plugin

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weir-cni/weir/conf"
	"github.com/weir-cni/weir/ipam"
	"github.com/weir-cni/weir/nsgroup"
)

func cmdAdd(args *skel.CmdArgs) error {
	c, err := loadForAdd(args)
	if err != nil {
		return err
	}
	r, err := add(c, args, newLogger(os.Stderr))
	if err != nil {
		return err
	}
	return types.PrintResult(r, c.CNIVersion)
}

// add wires one pod. Everything it creates is undone if any later step
// fails, so a failed ADD leaves no link and no reserved address behind.
// Fallbacks it takes (a pod wired without the agent) go to log.
func add(c *conf.NetConf, args *skel.CmdArgs, log *slog.Logger) (types.Result, error) {
	if args.Netns == "" {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_NETNS is required for ADD", "")
	}
	pod, err := openNetNS(args.Netns)
	if err != nil {
		return nil, err
	}
	defer pod.Close()

	at := &attachment{
		hostName: HostVethName(c.HostIfPrefix, args.ContainerID, args.IfName),
		podName:  args.IfName,
		sandbox:  args.Netns,
		routes:   c.Routes,
		group:    nsgroup.Of(c.PodNamespace),
	}
	if _, err := netlink.LinkByName(at.hostName); err == nil {
		return nil, types.NewError(ErrAttachmentExists,
			fmt.Sprintf("container %s already has interface %s (host end %s); DEL it first", args.ContainerID, args.IfName, at.hostName), "")
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("look up %s: %w", at.hostName, err)
	}
	if at.podMAC, err = randomMAC(); err != nil {
		return nil, err
	}

	store, err := openIPAM(c)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	key := ipam.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}
	allocs, err := store.Allocate(key, c.Ranges, c.Requested)
	if err != nil {
		return nil, ipamError(err)
	}
	var fresh []netip.Addr // what this ADD claimed, the only addresses it may free
	for _, a := range allocs {
		at.addrs = append(at.addrs, a.Addr)
		if a.Fresh {
			fresh = append(fresh, a.Addr)
		}
	}

	success, ownsLink := false, false
	defer func() {
		if success {
			return
		}
		if ownsLink {
			_, _ = deleteLink(nil, at.hostName)
		}
		// An address the attachment held before this ADD (a concurrent ADD
		// of it, or one whose host veth has another name since) stays:
		// freeing it would hand a live pod's address to the next pod.
		_ = store.ReleaseAddrs(key, fresh)
	}()

	v4, v6 := hasFamily(at.addrs, false), hasFamily(at.addrs, true)
	if err := ensureForwarding(v4, v6); err != nil {
		return nil, err
	}
	host, err := createVeth(at, alias(c.Name, args.ContainerID, args.IfName), c.MTU, pod, v6)
	if host != nil {
		ownsLink = true
	}
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, types.NewError(ErrAttachmentExists, fmt.Sprintf("interface %s or %s already exists", at.hostName, at.podName), err.Error())
		}
		return nil, err
	}
	h, err := netlink.NewHandleAt(pod)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in pod netns: %w", err)
	}
	defer h.Close()
	if err := configurePod(h, at); err != nil {
		return nil, err
	}
	if err := waitForAgent(c, args, at, log); err != nil {
		return nil, err
	}
	if err := configureHost(host, at); err != nil {
		return nil, err
	}
	success = true
	return at.result(), nil
}

// families tells which address families the ranges hand out.
func families(rs []conf.Range) (v4, v6 bool) {
	for _, r := range rs {
		if r.Is6() {
			v6 = true
		} else {
			v4 = true
		}
	}
	return v4, v6
}
