package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/examples"
	"github.com/weir-cni/weir/internal/testkit"
)

// talkPolicies are the two policies of the talk weir started from.
var talkPolicies = examples.TalkPolicies

// Node and external-host addresses of the demo.
const (
	nodeAddr  = "192.168.50.1"
	extLink   = "192.168.50.2"
	extInside = "10.0.0.5" // inside test-network-policy's egress ipBlock
	extOther  = "10.0.1.5" // outside it
)

// external is a host outside the cluster, behind the node.
type external struct {
	netns *testkit.NS
	echos []*testkit.Echo
}

// withPolicies starts weir-agent in the node with the pods and the talk
// policies as manifests, and prints the matrix again with the reason for
// every verdict.
func (d *demo) withPolicies(ctx context.Context, agentBin string) error {
	dir := filepath.Join(d.dataDir, "manifests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.json"), d.manifest(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "policies.yaml"), []byte(talkPolicies), 0o644); err != nil {
		return err
	}
	sock := filepath.Join(d.dataDir, "agent.sock")
	d.agent = exec.Command(agentBin, "--node-name", "demo-node", "--manifests", dir, "--socket", sock,
		"--cluster-cidr", "172.17.0.0/23,fd00:17::/64", "--http-addr", "")
	logf, err := os.Create(filepath.Join(d.dataDir, "agent.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	d.agent.Stdout, d.agent.Stderr = logf, logf
	if err := testkit.StartIn(d.node, d.agent); err != nil {
		return fmt.Errorf("start weir-agent: %w", err)
	}
	if err := waitSynced(ctx, sock); err != nil {
		b, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("%w\nagent log:\n%s", err, b)
	}
	fmt.Println("\nweir-agent is enforcing the two policies of the talk (nftables table `inet weir` in the node):")
	fmt.Println("  web-allow-prod:      app=web pods accept only from namespaces labelled purpose=production")
	fmt.Println("  test-network-policy: role=db accepts TCP 6379 from 172.17.0.0/16 except 172.17.1.0/24,")
	fmt.Println("                       from namespaces project=myproject and pods role=frontend;")
	fmt.Println("                       it may only reach 10.0.0.0/24 on TCP 5978")
	d.printMatrix(false)
	d.printMatrix(true)
	return d.explainAll(ctx, sock)
}

// manifest describes the node, namespaces and wired pods for the agent.
func (d *demo) manifest() []byte {
	items := []any{map[string]any{
		"apiVersion": "v1", "kind": "Node", "metadata": map[string]any{"name": "demo-node"},
		"spec":   map[string]any{"podCIDRs": []string{"172.17.0.0/24", "fd00:17::/64"}},
		"status": map[string]any{"addresses": []any{map[string]string{"type": "InternalIP", "address": nodeAddr}}},
	}}
	seen := map[string]bool{}
	for _, p := range d.pods {
		if !seen[p.namespace] {
			seen[p.namespace] = true
			items = append(items, map[string]any{"apiVersion": "v1", "kind": "Namespace",
				"metadata": map[string]any{"name": p.namespace, "labels": p.nsLabels}})
		}
		var ips []any
		for _, a := range p.ips {
			ips = append(ips, map[string]string{"ip": a.String()})
		}
		items = append(items, map[string]any{"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"namespace": p.namespace, "name": p.name, "labels": p.labels},
			"spec":     map[string]any{"nodeName": "demo-node", "containers": []any{map[string]any{"name": "c", "image": "demo"}}},
			"status":   map[string]any{"phase": "Running", "podIPs": ips}})
	}
	b, _ := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", " ")
	return b
}

// waitSynced waits for the agent's first sync and prints the policy and
// dataplane problems it reports.
func waitSynced(ctx context.Context, sock string) error {
	st, err := testkit.WaitSynced(ctx, sock, 20*time.Second)
	for _, p := range st.Problems {
		fmt.Println("policy problem:", p)
	}
	for _, p := range st.DataplaneProblems {
		fmt.Println("dataplane problem:", p)
	}
	return err
}

// explainAll asks the agent, for every pair of the matrix and the external
// hosts, whether the connection is allowed and by which rule.
func (d *demo) explainAll(ctx context.Context, sock string) error {
	fmt.Println("\nWhy (weirctl explain, from the ruleset the kernel holds):")
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	type pair struct{ from, to, fromAddr, toAddr string }
	var pairs []pair
	for _, from := range d.pods {
		for _, to := range d.pods {
			if from != to {
				pairs = append(pairs, pair{from.id(), fmt.Sprintf("%s:%d", to.id(), to.port), from.id(), to.id()})
			}
		}
	}
	db := d.find("default", "db")
	for _, ext := range []string{extInside, extOther} {
		pairs = append(pairs, pair{"default/db", "ext " + ext + ":5978", db.id(), ext})
	}
	for _, pr := range pairs {
		port := 5978
		if !strings.HasPrefix(pr.to, "ext ") {
			port = d.find(strings.Split(pr.toAddr, "/")[0], strings.Split(pr.toAddr, "/")[1]).port
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := agentapi.Call(cctx, sock, agentapi.Request{Op: agentapi.OpExplain, Src: pr.fromAddr, Dst: pr.toAddr, Protocol: "TCP", Port: port})
		cancel()
		if err != nil {
			return fmt.Errorf("explain %s -> %s: %w", pr.from, pr.to, err)
		}
		var e agentapi.Explanation
		if err := json.Unmarshal(resp.Result, &e); err != nil {
			return err
		}
		fmt.Fprintf(w, "%s -> %s\t%s\t%s\n", pr.from, pr.to, verdict(e.Allowed), reason(e.Steps))
	}
	return w.Flush()
}

func verdict(ok bool) string {
	if ok {
		return "ALLOWED"
	}
	return "DENIED"
}

// reason condenses a trace to the rules that decided: the rules with an
// owner that accepted (a policy rule, a pod to its node or to itself),
// and the drops, each named by its owner when it has one.
func reason(steps []agentapi.ExplainStep) string {
	var out []string
	for _, s := range steps {
		switch {
		case s.Verdict == "drop" && s.Owner == nil:
			out = append(out, s.Text)
		case s.Verdict == "drop", s.Verdict == "accept" && s.Owner != nil:
			out = append(out, s.Owner.Text)
		}
	}
	if len(out) == 0 {
		return "no policy selects either pod"
	}
	return strings.Join(out, "; ")
}

func (d *demo) find(ns, name string) *pod {
	for _, p := range d.pods {
		if p.namespace == ns && p.name == name {
			return p
		}
	}
	return nil
}

// linkExternal joins an "external" namespace to the node, routes the
// external addresses through it and serves TCP 5978 there.
func (d *demo) linkExternal() error {
	n, err := testkit.NewNS("weir-demo-ext-")
	if err != nil {
		return err
	}
	d.ext = &external{netns: n}
	if err := d.node.AddAddrs(nodeAddr + "/32"); err != nil {
		return err
	}
	err = d.node.Do(func(ns.NetNS) error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ext0"}, PeerName: "up0", PeerNamespace: netlink.NsFd(int(n.Fd()))}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(veth); err != nil {
			return err
		}
		link, _ := netlink.ParseIPNet(extLink + "/32")
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: veth.Attrs().Index, Dst: link, Scope: netlink.SCOPE_LINK}); err != nil {
			return err
		}
		for _, a := range []string{extInside, extOther} {
			dst, _ := netlink.ParseIPNet(a + "/32")
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: veth.Attrs().Index, Dst: dst, Gw: net.ParseIP(extLink)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node side of the external link: %w", err)
	}
	err = n.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName("up0")
		if err != nil {
			return err
		}
		for _, a := range []string{extLink, extInside, extOther} {
			addr, _ := netlink.ParseAddr(a + "/32")
			if err := netlink.AddrAdd(l, addr); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
		node, _ := netlink.ParseIPNet(nodeAddr + "/32")
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: node, Scope: netlink.SCOPE_LINK}); err != nil {
			return err
		}
		def, _ := netlink.ParseIPNet("0.0.0.0/0")
		return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: def, Gw: net.ParseIP(nodeAddr)})
	})
	if err != nil {
		return fmt.Errorf("external side: %w", err)
	}
	e, err := testkit.StartEcho(n, 5978)
	if err != nil {
		return err
	}
	d.ext.echos = append(d.ext.echos, e)
	return nil
}

// printExternal probes db's egress to the two external addresses.
func (d *demo) printExternal() {
	db := d.find("default", "db")
	for _, a := range []string{extInside, extOther} {
		_, err := testkit.ProbeTCP(db.netns, netip.MustParseAddr(a), 5978)
		fmt.Printf("default/db -> external %s:5978  %s\n", a, mark(err))
	}
}
