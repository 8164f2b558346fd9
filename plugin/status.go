package plugin

import (
	"context"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/weir-cni/weir/agentapi"
)

// cmdStatus tells the runtime whether this node can take pods: the address
// store must be usable, every configured family must have a free address,
// and with failClosed the agent must answer (or every ADD would fail).
func cmdStatus(args *skel.CmdArgs) error {
	c, err := load(args)
	if err != nil {
		return err
	}
	if c.FailClosed && c.AgentWait > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), c.AgentWait)
		_, err := agentapi.Call(ctx, c.AgentSocket, agentapi.Request{Op: agentapi.OpStatus})
		cancel()
		if err != nil {
			return types.NewError(types.ErrPluginNotAvailable, "weir-agent is not answering and failClosed is set", err.Error())
		}
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
