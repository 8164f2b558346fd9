package plugin

import (
	"context"
	"io"
	"log/slog"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/conf"
)

// newLogger is the plugin's logger: structured text on w (the runtime
// collects a plugin's stderr into its own log), never on stdout, which
// carries the CNI result.
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil)).With("plugin", "weir")
}

// waitForAgent asks weir-agent to program the new pod's addresses before
// the host end of its veth comes up, so the pod never sends or receives a
// packet the policy has not yet seen. The wait is bounded by agentWait.
//
// Fail-closed (the default): an agent that is absent, does not answer in
// time or refuses the pod fails ADD with code 11 ("try again later"), and
// add rolls everything back. Fail-open ("failClosed": false, an explicit
// opt-in): the pod is wired anyway, and every such fallback is logged.
func waitForAgent(c *conf.NetConf, args *skel.CmdArgs, at *attachment, log *slog.Logger) error {
	pod := c.PodNamespace + "/" + c.PodName
	if c.AgentWait == 0 { // conf.Load allows this only with failClosed false
		log.Warn("pod wired without asking the agent: agentWait is 0s and failClosed is false; "+
			"its namespace's policies apply once the agent learns of it",
			"pod", pod, "containerID", args.ContainerID, "ips", at.addrs)
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
		log.Warn("pod wired without the agent's confirmation because failClosed is false; "+
			"its namespace's policies apply once the agent learns of it",
			"pod", pod, "containerID", args.ContainerID, "ips", at.addrs, "agentSocket", c.AgentSocket,
			"agentWait", c.AgentWait, "err", err)
		return nil
	}
	return types.NewError(types.ErrTryAgainLater,
		"weir-agent did not confirm the pod's policy within agentWait; not wiring it (fail-closed)",
		err.Error()+` (to wire pods without the agent's confirmation, set "failClosed": false)`)
}
