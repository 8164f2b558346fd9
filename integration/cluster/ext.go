package cluster

import (
	"context"
	"fmt"
	"net"
	"time"
)

// NodeExec runs a short command in node n's network and mount namespaces.
func (c *Cluster) NodeExec(ctx context.Context, n *Node, bin string, args ...string) (string, error) {
	return c.in(n).run(ctx, bin, args...)
}

// outsidePort is where StartOutsideServer listens on the outside host.
const outsidePort = 8080

// StartOutsideServer runs `agnhost netexec` on the host outside the
// cluster (ExtIP), for pods to reach through the nodes' masquerade; its
// /clientip answers the address a connection came from. stop ends it.
func (c *Cluster) StartOutsideServer(agnhost string) (stop func(), port int, err error) {
	p, err := c.start("outside-netexec", where{netns: c.ExtNetns}, nil, agnhost,
		"netexec", fmt.Sprintf("--http-port=%d", outsidePort), "--udp-port=-1")
	if err != nil {
		return nil, 0, err
	}
	stop = func() { _ = p.stop(5 * time.Second) }
	addr := net.JoinHostPort(c.ExtIP.String(), fmt.Sprint(outsidePort))
	dial := dialIn("/run/netns/" + c.ExtNetns)
	if err := poll(context.Background(), "outside server", 20*time.Second, 100*time.Millisecond, func() error {
		conn, err := dial(context.Background(), "tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err
	}); err != nil {
		stop()
		return nil, 0, err
	}
	return stop, outsidePort, nil
}
