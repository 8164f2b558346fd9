package plugin

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/weir-cni/weir/ipam"
)

// cmdDel undoes ADD. It succeeds when the namespace, the link or the
// container are already gone, and always releases the addresses.
func cmdDel(args *skel.CmdArgs) error {
	c, err := load(args)
	if err != nil {
		return err
	}
	hostName := HostVethName(c.HostIfPrefix, args.ContainerID, args.IfName)
	found, linkErr := deleteLink(nil, hostName)
	if !found && linkErr == nil && args.Netns != "" && exists(args.Netns) {
		// Deleting the host end takes the pod end with it; only when the
		// host end is gone may the pod end have outlived it.
		linkErr = deletePodLink(args.Netns, args.IfName)
	}
	store, err := openIPAM(c)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Release(ipam.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}); err != nil {
		return types.NewError(types.ErrIOFailure, "release addresses", err.Error())
	}
	return linkErr
}

// deletePodLink removes the pod end when it outlived the host end (for
// instance, the host end was renamed or deleted by hand). Only veths are
// touched: the name may belong to something else in a shared namespace.
func deletePodLink(path, ifname string) error {
	pod, err := openNetNS(path)
	if err != nil {
		return nil // gone, or not a namespace: nothing of ours is left there
	}
	defer pod.Close()
	h, err := netlink.NewHandleAt(pod)
	if err != nil {
		return fmt.Errorf("netlink handle in pod netns: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(ifname)
	if err != nil {
		return nil
	}
	if _, ok := link.(*netlink.Veth); !ok {
		return nil
	}
	if err := h.LinkDel(link); err != nil {
		return fmt.Errorf("delete %s in pod: %w", ifname, err)
	}
	return nil
}
