package controller

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/weir-cni/weir/controller/snapshot"
)

// errNotLocal marks an announcement the agent refuses. An announced
// address takes the place of any other pod's (see overlay), so an
// announcement of another node's pod, or of an address from outside this
// node's pod ranges, could push a local pod out of the ruleset.
var errNotLocal = errors.New("announcement refused: not a pod of this node")

// admitAnnouncement decides whether pod, announced with ips to the agent
// of node, whose podCIDRs are given, may be taken: the pod must be
// scheduled to node (when the agent knows where it runs: a cache may not
// have seen its binding yet), and it must be announced with addresses,
// all inside podCIDRs, the ranges the plugin of node hands out. Pure.
func admitAnnouncement(node string, podCIDRs []netip.Prefix, pod *snapshot.Pod, ips []netip.Addr) error {
	name := pod.Namespace + "/" + pod.Name
	if on := pod.NodeName; on != "" && on != node {
		return fmt.Errorf("pod %s runs on node %s, and this is node %s: %w", name, on, node, errNotLocal)
	}
	if len(ips) == 0 {
		return fmt.Errorf("pod %s announced without addresses: %w", name, errNotLocal)
	}
	if len(podCIDRs) == 0 {
		return fmt.Errorf("node %s has no podCIDRs in the agent's view to check pod %s's addresses against: %w",
			node, name, errNotLocal)
	}
	for _, ip := range ips {
		ip = ip.Unmap()
		if !slices.ContainsFunc(podCIDRs, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			return fmt.Errorf("address %s of pod %s is outside node %s's podCIDRs %v: %w", ip, name, node, podCIDRs, errNotLocal)
		}
	}
	return nil
}
