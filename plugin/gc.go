package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/weir-cni/weir/ipam"
)

// cmdGC releases the addresses and deletes the host veths of every
// attachment of this network that the runtime no longer lists as valid.
func cmdGC(args *skel.CmdArgs) error {
	c, err := load(args)
	if err != nil {
		return err
	}
	list, err := validAttachments(args.StdinData)
	if err != nil {
		return err
	}
	valid := make([]ipam.Attachment, 0, len(list))
	keep := map[ipam.Attachment]bool{}
	keepName := map[string]bool{}
	for _, v := range list {
		a := ipam.Attachment{ContainerID: v.ContainerID, IfName: v.IfName}
		valid = append(valid, a)
		keep[a] = true
		keepName[HostVethName(c.HostIfPrefix, v.ContainerID, v.IfName)] = true
	}
	store, err := openIPAM(c)
	if err != nil {
		return err
	}
	defer store.Close()
	var errs []error
	if _, err := store.GC(valid); err != nil {
		errs = append(errs, fmt.Errorf("release stale addresses: %w", err))
	}
	links, err := netlinksafe.LinkList()
	if err != nil {
		return types.NewError(types.ErrIOFailure, "list links", err.Error())
	}
	for _, l := range links {
		if !stale(c.Name, c.HostIfPrefix, l, keep, keepName) {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete stale %s: %w", l.Attrs().Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return types.NewError(types.ErrIOFailure, "garbage collection incomplete", err.Error())
	}
	return nil
}

// validAttachments returns the runtime's list of the attachments still in
// use. GC without the key is refused (code 7), not read as an empty list:
// that would release every address and delete every veth of the network.
// The key present, an empty list or null (what libcni sends for no valid
// attachment: a drained node) means "none is valid". CNI 1.1.0's text also
// names the key cni.dev/attachments, taken when the other is missing.
func validAttachments(stdin []byte) ([]types.GCAttachment, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(stdin, &keys); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decode network configuration", err.Error())
	}
	for _, k := range []string{"cni.dev/valid-attachments", "cni.dev/attachments"} {
		raw, ok := keys[k]
		if !ok {
			continue
		}
		var list []types.GCAttachment // null leaves it empty
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "decode "+k, err.Error())
		}
		return list, nil
	}
	return nil, types.NewError(types.ErrInvalidNetworkConfig, "GC without cni.dev/valid-attachments",
		"a missing list is not read as empty: every attachment of the network would be released")
}

// stale reports whether l is a host veth of network that no valid
// attachment owns. A host veth carries its attachment in its alias; one
// without alias (its ADD was killed between creating the pair and setting
// the alias) is recognised by weir's prefix and fixed host MAC, and kept
// only if its name is that of a valid attachment.
func stale(network, prefix string, l netlink.Link, keep map[ipam.Attachment]bool, keepName map[string]bool) bool {
	attrs := l.Attrs()
	if attrs.Alias == "" {
		_, isVeth := l.(*netlink.Veth)
		return isVeth && strings.HasPrefix(attrs.Name, prefix) && bytes.Equal(attrs.HardwareAddr, hostMAC) && !keepName[attrs.Name]
	}
	net, a, ok := parseAlias(attrs.Alias)
	return ok && net == network && !keep[a]
}
