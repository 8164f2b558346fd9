package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/conf"
)

// waitForAgent asks weir-agent to program the new pod's addresses before
// the host end of its veth comes up, so the pod never sends or receives a
// packet the policy has not yet seen. The wait is bounded by agentWait.
// Without an agent the pod is wired anyway, unless failClosed is set.
func waitForAgent(c *conf.NetConf, args *skel.CmdArgs, at *attachment) error {
	if c.AgentWait == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.AgentWait)
	defer cancel()
	req := agentapi.Request{
		Op:          agentapi.OpPodAdded,
		Namespace:   c.PodNamespace,
		Name:        c.PodName,
		ContainerID: args.ContainerID,
	}
	for _, a := range at.addrs {
		req.IPs = append(req.IPs, a.String())
	}
	_, err := agentapi.Call(ctx, c.AgentSocket, req)
	if err == nil {
		return nil
	}
	if !c.FailClosed {
		if !errors.Is(err, agentapi.ErrNoAgent) {
			fmt.Fprintf(os.Stderr, "weir: pod %s/%s wired without agent confirmation: %v\n", c.PodNamespace, c.PodName, err)
		}
		return nil
	}
	return types.NewError(types.ErrTryAgainLater, "weir-agent did not program the pod in time (failClosed is set)", err.Error())
}
