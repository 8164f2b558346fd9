package main

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/integration/cluster"
)

// The network-policy-api conformance suite (sigs.k8s.io/network-policy-api
// conformance/, built by hack/build-k8s.sh as cnp-conformance.test): its
// plain entry point, every feature (standard and experimental: named
// ports, node peers), 40 minutes at most (go test's default is 10).
const (
	cnpRoot    = "TestConformance"
	cnpTimeout = 40 * time.Minute
)

// cnpNamespaces are the namespaces the suite's base manifests create and
// its cleanup deletes.
var cnpNamespaces = []string{
	"network-policy-conformance-gryffindor",
	"network-policy-conformance-slytherin",
	"network-policy-conformance-hufflepuff",
	"network-policy-conformance-ravenclaw",
	"network-policy-conformance-forbidden-forrest",
}

// cnpDenyNodePeer is the one subtest of each NodePeers test that probes
// SCTP (after TCP and UDP; it is the test's last).
const cnpDenyNodePeer = "Should support a 'deny-egress' rule policy for egress-node-peer"

// cnpSCTPSkips are the conformance tests that probe SCTP: on a kernel
// without it agnhost connect --protocol=sctp fails whatever the policy,
// and the suite's probes stop a subtest at the first failure. Each of the
// ten whole tests probes SCTP in every subtest; of the NodePeers tests
// only the last subtest does, so the earlier ones still run. The tests
// left out are all of the suite's networks (CIDR), port range and
// multi-protocol tests and its node deny: weir-cnp covers those over TCP
// and UDP.
var cnpSCTPSkips = []cluster.SkippedTest{
	{Test: "CNPAdminTierEgressSCTP"},
	{Test: "CNPAdminTierIngressSCTP"},
	{Test: "CNPAdminTierGress"},
	{Test: "CNPAdminTierPortRange"},
	{Test: "CNPAdminTierEgressInlineCIDRPeers"},
	{Test: "CNPBaselineTierEgressSCTP"},
	{Test: "CNPBaselineTierIngressSCTP"},
	{Test: "CNPBaselineTierGress"},
	{Test: "CNPBaselineTierPortRange"},
	{Test: "CNPBaselineTierEgressInlineCIDRPeers"},
	{Test: "CNPAdminTierEgressNodePeers", Subtest: cnpDenyNodePeer},
	{Test: "CNPBaselineTierEgressNodePeers", Subtest: cnpDenyNodePeer},
}

// cnpSuite is the conformance run on this kernel: the SCTP tests are
// skipped only when it has no SCTP.
func cnpSuite(sctp bool) cluster.GoTest {
	g := cluster.GoTest{Name: "cnp", Root: cnpRoot, Timeout: cnpTimeout, Args: []string{"-all-features"}}
	if !sctp {
		g.Skip, g.SkipReason = cnpSCTPSkips, noSCTP
	}
	return g
}

// cnpConformance runs the conformance suite in the control plane's
// namespace (the CRD was applied before weir) and waits for its
// namespaces to be gone, so a later run starts clean.
func cnpConformance(ctx context.Context, c *cluster.Cluster, o options, runDir string, logf func(string, ...any)) cluster.Result {
	g := cnpSuite(sctpAvailable())
	if err := cnpPreflight(ctx, c); err != nil {
		return cluster.Result{Suite: cluster.Suite{Name: g.Name}, Err: err}
	}
	if len(g.Skip) > 0 {
		logf("cnp: skipping %d tests and subtests because %s:", len(g.Skip), g.SkipReason)
		for _, s := range g.Skip {
			if s.Subtest != "" {
				logf("  %s / %s", s.Test, s.Subtest)
			} else {
				logf("  %s", s.Test)
			}
		}
	}
	r := c.GoTest(ctx, o.cnpTest, runDir, g, nil)
	start := time.Now()
	if err := waitGone(ctx, c, cnpNamespaces, 5*time.Minute); err != nil {
		r.Cases = append(r.Cases, cluster.Case{Name: "[cleanup] the suite's namespaces are deleted", State: "failed",
			Message: err.Error(), Duration: time.Since(start)})
	}
	return r
}

// cnpPreflight checks what the suite's base workload needs of the nodes:
// two of them (the hostNetwork StatefulSet centaur has two replicas on the
// same host ports) and the kubernetes.io/os=linux label (the kubelet sets
// it; the node peer tests select nodes by it).
func cnpPreflight(ctx context.Context, c *cluster.Cluster) error {
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	if len(nodes.Items) < 2 {
		return fmt.Errorf("%d node(s): the suite's hostNetwork pods need two (run with -workers 2 or more)", len(nodes.Items))
	}
	for _, n := range nodes.Items {
		if n.Labels["kubernetes.io/os"] != "linux" {
			return fmt.Errorf("node %s lacks the label kubernetes.io/os=linux the suite's node peers select", n.Name)
		}
	}
	return nil
}

// waitGone waits until none of the namespaces exists any more.
func waitGone(ctx context.Context, c *cluster.Cluster, namespaces []string, timeout time.Duration) error {
	return pollFor(ctx, timeout, func() error {
		for _, ns := range namespaces {
			_, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				continue
			case err != nil:
				return err
			default:
				return fmt.Errorf("namespace %s still exists after %v", ns, timeout)
			}
		}
		return nil
	})
}
