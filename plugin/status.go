package plugin

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// cmdStatus tells the runtime whether this node can take pods: the address
// store must be usable and every configured family must have a free address.
func cmdStatus(args *skel.CmdArgs) error {
	c, err := load(args)
	if err != nil {
		return err
	}
	store, err := openIPAM(c)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "address store unusable", err.Error())
	}
	defer store.Close()
	free4, free6, err := store.Free(c.Ranges)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "address store unreadable", err.Error())
	}
	v4, v6 := families(c.Ranges)
	if v4 && free4 == 0 {
		return types.NewError(types.ErrPluginNotAvailable, "no free IPv4 address", fmt.Sprintf("every IPv4 range of network %q is in use", c.Name))
	}
	if v6 && free6 == 0 {
		return types.NewError(types.ErrPluginNotAvailable, "no free IPv6 address", fmt.Sprintf("every IPv6 range of network %q is in use", c.Name))
	}
	return nil
}
