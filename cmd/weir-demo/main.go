// Command weir-demo wires a few pods into a throwaway node network namespace
// with the weir plugin, prints their addresses and a TCP connectivity
// matrix, then starts weir-agent with the two NetworkPolicies of the talk
// weir started from and prints the matrix again with the reason for every
// verdict. Everything is removed on exit (also on Ctrl-C). It needs root
// and touches nothing outside the namespaces it creates.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/weir-cni/weir/internal/testkit"
)

// pod is one demo pod: a Kubernetes namespace/name, its labels, the port it
// serves (a TCP/UDP echo) and its network namespace.
type pod struct {
	namespace, name string
	labels          map[string]string
	nsLabels        map[string]string
	port            int
	// request are the addresses asked of the plugin (IP= in CNI_ARGS), so
	// pods land inside and outside the policies' ipBlocks.
	request []string
	netns   *testkit.NS
	ips     []netip.Addr
	hostIf  string
	echo    *testkit.Echo
}

func (p *pod) id() string { return p.namespace + "/" + p.name }

// demo is the running scenario.
type demo struct {
	plugin  string
	dataDir string
	node    *testkit.NS
	pods    []*pod
	ext     *external
	agent   *exec.Cmd
}

func main() { os.Exit(run()) }

func run() int {
	plugin := flag.String("plugin", "bin/weir", "weir plugin binary")
	agent := flag.String("agent", "bin/weir-agent", "weir-agent binary (empty: skip the policy part)")
	hold := flag.Bool("hold", false, "keep the namespaces until Ctrl-C, to look around with `ip netns exec`")
	flag.Parse()
	ctx, stop, ok := testkit.RootContext("weir-demo")
	if !ok {
		return 1
	}
	defer stop()

	prod, dev, myproject := map[string]string{"purpose": "production"}, map[string]string{"purpose": "dev"}, map[string]string{"project": "myproject"}
	d := &demo{pods: []*pod{
		{namespace: "default", name: "web", labels: map[string]string{"app": "web"}, port: 80, request: []string{"172.17.0.10", "fd00:17::10"}},
		{namespace: "default", name: "db", labels: map[string]string{"role": "db"}, port: 6379, request: []string{"172.17.0.11", "fd00:17::11"}},
		{namespace: "default", name: "frontend", labels: map[string]string{"role": "frontend"}, port: 80, request: []string{"172.17.1.10", "fd00:17::1:10"}},
		{namespace: "prod", name: "client", nsLabels: prod, port: 80, request: []string{"172.17.0.20", "fd00:17::20"}},
		{namespace: "dev", name: "client", nsLabels: dev, port: 80, request: []string{"172.17.1.21", "fd00:17::1:21"}},
		{namespace: "myproject", name: "client", nsLabels: myproject, port: 80, request: []string{"172.17.1.22", "fd00:17::1:22"}},
	}}
	defer d.teardown()
	if err := d.setup(ctx, *plugin); err != nil {
		fmt.Fprintln(os.Stderr, "weir-demo:", err)
		return 1
	}
	d.printPods()
	for _, v6 := range []bool{false, true} {
		if err := ctx.Err(); err != nil {
			return 1
		}
		d.printMatrix(v6)
	}
	d.printExternal()
	fmt.Println("\nNo policies yet: every pod reaches every other pod and the outside.")
	if *agent != "" {
		if err := d.withPolicies(ctx, *agent); err != nil {
			fmt.Fprintln(os.Stderr, "weir-demo:", err)
			return 1
		}
		d.printExternal()
	}
	if *hold {
		fmt.Printf("Holding; try `ip netns exec %s ip route`. Ctrl-C cleans up.\n", d.node.Name)
		<-ctx.Done()
	}
	fmt.Println("Cleaning up.")
	return 0
}

// netconf is the network the demo pods join: dual-stack, state in a temp dir.
// The demo wires its pods before it starts the agent (to show the cluster
// without policies first), so it opts into fail-open and does not ask one.
func (d *demo) netconf() []byte {
	b, _ := json.Marshal(map[string]any{
		"cniVersion": "1.1.0", "name": "weir-demo", "type": "weir",
		"agentWait": "0s", "failClosed": false,
		"ipam": map[string]any{
			"ranges": []any{map[string]string{"subnet": "172.17.0.0/24"}, map[string]string{"subnet": "172.17.1.0/24"},
				map[string]string{"subnet": "fd00:17::/64"}},
			"dataDir": d.dataDir,
		},
	})
	return b
}

func (d *demo) setup(ctx context.Context, plugin string) error {
	var err error
	if d.plugin, err = filepath.Abs(plugin); err != nil {
		return err
	}
	if _, err := os.Stat(d.plugin); err != nil {
		return fmt.Errorf("%w (run `make build`)", err)
	}
	if d.dataDir, err = os.MkdirTemp("", "weir-demo-"); err != nil {
		return err
	}
	if d.node, err = testkit.NewNS("weir-demo-node-"); err != nil {
		return err
	}
	fmt.Printf("node namespace %s, pods wired by %s\n\n", d.node.Name, d.plugin)
	for _, p := range d.pods {
		if p.netns, err = testkit.NewNS("weir-demo-" + p.name + "-"); err != nil {
			return err
		}
		if err := d.add(ctx, p); err != nil {
			return err
		}
		if p.echo, err = testkit.StartEcho(p.netns, p.port); err != nil {
			return fmt.Errorf("echo server in %s: %w", p.id(), err)
		}
	}
	return d.linkExternal()
}

func (d *demo) call(cmd string, p *pod) testkit.Call {
	return testkit.Call{
		Command: cmd, ContainerID: "demo-" + p.namespace + "-" + p.name, Netns: p.netns.Path(), IfName: "eth0",
		Path: filepath.Dir(d.plugin), Conf: d.netconf(),
		Args: "K8S_POD_NAMESPACE=" + p.namespace + ";K8S_POD_NAME=" + p.name + ";IP=" + strings.Join(p.request, ","),
	}
}

// add runs CNI ADD for p inside the node, as the kubelet's runtime would.
func (d *demo) add(ctx context.Context, p *pod) error {
	o, err := d.call("ADD", p).Exec(ctx, d.node, d.plugin)
	if err != nil {
		return err
	}
	if o.Err != nil {
		return fmt.Errorf("ADD %s: code %d: %s: %s", p.id(), o.Err.Code, o.Err.Msg, o.Err.Details)
	}
	var res current.Result
	if err := json.Unmarshal(o.Stdout, &res); err != nil {
		return fmt.Errorf("ADD %s: decode result: %w", p.id(), err)
	}
	for _, ip := range res.IPs {
		if a, ok := netip.AddrFromSlice(ip.Address.IP); ok {
			p.ips = append(p.ips, a.Unmap())
		}
	}
	if len(res.Interfaces) > 0 {
		p.hostIf = res.Interfaces[0].Name
	}
	return nil
}

func (d *demo) printPods() {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "POD\tNETNS\tIPv4\tIPv6\tHOST VETH")
	for _, p := range d.pods {
		v4, v6 := p.addr(false), p.addr(true)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.id(), p.netns.Name, v4, v6, p.hostIf)
	}
	w.Flush()
}

func (p *pod) addr(v6 bool) netip.Addr {
	for _, a := range p.ips {
		if a.Is6() == v6 {
			return a
		}
	}
	return netip.Addr{}
}

// printMatrix probes TCP from every pod to every other pod on one family.
func (d *demo) printMatrix(v6 bool) {
	family := "IPv4"
	if v6 {
		family = "IPv6"
	}
	fmt.Printf("\nTCP %s connectivity (row -> column):\n", family)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	cols := []string{"from \\ to"}
	for _, p := range d.pods {
		cols = append(cols, fmt.Sprintf("%s:%d", p.id(), p.port))
	}
	fmt.Fprintln(w, strings.Join(cols, "\t"))
	for _, from := range d.pods {
		row := []string{from.id()}
		for _, to := range d.pods {
			switch {
			case from == to:
				row = append(row, "-")
			default:
				_, err := testkit.ProbeTCP(from.netns, to.addr(v6), to.port)
				row = append(row, mark(err))
			}
		}
		fmt.Fprintln(w, strings.Join(row, "\t"))
	}
	w.Flush()
}

func mark(err error) string {
	if err != nil {
		return "✗"
	}
	return "✓"
}

// teardown DELs every wired pod and removes every namespace and the data
// dir, whatever state setup reached.
func (d *demo) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	if d.agent != nil && d.agent.Process != nil {
		_ = d.agent.Process.Kill()
		_ = d.agent.Wait()
	}
	if d.ext != nil {
		for _, e := range d.ext.echos {
			e.Close()
		}
		errs = append(errs, d.ext.netns.Delete())
	}
	for _, p := range d.pods {
		if p.echo != nil {
			p.echo.Close()
		}
		if p.netns == nil {
			continue
		}
		if d.node != nil && p.ips != nil {
			if o, err := d.call("DEL", p).Exec(ctx, d.node, d.plugin); err != nil {
				errs = append(errs, err)
			} else if o.Err != nil {
				errs = append(errs, fmt.Errorf("DEL %s: %s: %s", p.id(), o.Err.Msg, o.Err.Details))
			}
		}
		errs = append(errs, p.netns.Delete())
	}
	if d.node != nil {
		errs = append(errs, d.node.Delete())
	}
	if d.dataDir != "" {
		errs = append(errs, os.RemoveAll(d.dataDir))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, "weir-demo: cleanup:", err)
	}
}
