// Command bench-cni-add measures the time per pod of CNI ADD and DEL for weir
// and for the reference plugins bridge + host-local, driven the same way
// (direct exec with the same CNI environment, from inside one node network
// namespace), in interleaved A/B rounds. It needs root. It touches the
// kernel only inside the namespaces it creates and removes them on exit.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/weir-cni/weir/internal/testkit"
)

func main() { os.Exit(run()) }

// plugin is one side of the comparison.
type plugin struct {
	name string
	bin  string // the binary the runtime execs
	path string // CNI_PATH
	conf []byte
	add  []time.Duration
	del  []time.Duration
}

func run() int {
	weir := flag.String("weir", "bin/weir", "weir plugin binary")
	ref := flag.String("ref", "bin/tools", "directory holding the reference bridge and host-local binaries")
	rounds := flag.Int("rounds", 10, "interleaved rounds")
	pods := flag.Int("pods", 20, "pods per plugin per round")
	version := flag.String("cni-version", "1.1.0", "cniVersion of both configs")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, *weir, *ref, *rounds, *pods, *version); err != nil {
		fmt.Fprintln(os.Stderr, "bench-cni-add:", err)
		return 1
	}
	return 0
}

func bench(ctx context.Context, weirBin, refDir string, rounds, pods int, version string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (it creates network namespaces)")
	}
	ps, cleanup, err := plugins(weirBin, refDir, version)
	defer cleanup()
	if err != nil {
		return err
	}
	node, err := testkit.NewNS("weirb-n-")
	if err != nil {
		return err
	}
	defer node.Delete()

	fmt.Printf("bench-cni-add: %d rounds x %d pods per plugin, interleaved, cniVersion %s, node netns %s\n",
		rounds, pods, version, node.Name)
	for _, p := range ps {
		fmt.Printf("  %-10s %s\n", p.name, p.conf)
	}
	// One untimed pod each first: the bridge plugin creates its bridge on
	// the first ADD, weir sets its sysctls; neither is per-pod work.
	for _, p := range ps {
		if err := round(ctx, node, p, 1, "warmup", false); err != nil {
			return err
		}
	}
	for r := range rounds {
		// Rotate who goes first, so drift in the machine hits all alike.
		for k := range ps {
			p := ps[(r+k)%len(ps)]
			if err := round(ctx, node, p, pods, fmt.Sprintf("r%d", r), true); err != nil {
				return err
			}
		}
	}
	report(ps[0], ps[1:])
	return nil
}

// plugins returns weir and the two reference configs, each with a data
// dir of its own. "ref" is bridge + host-local with ipMasq like weir's
// config (the bridge adds per-pod iptables rules for it; weir masquerades
// once per node in its agent); "ref-nomasq" is the same without ipMasq.
func plugins(weirBin, refDir, version string) (ps []*plugin, cleanup func(), err error) {
	tmp, err := os.MkdirTemp("", "weir-bench-")
	cleanup = func() { os.RemoveAll(tmp) }
	if err != nil {
		return nil, cleanup, err
	}
	if weirBin, err = filepath.Abs(weirBin); err != nil {
		return nil, cleanup, err
	}
	if refDir, err = filepath.Abs(refDir); err != nil {
		return nil, cleanup, err
	}
	for _, f := range []string{weirBin, filepath.Join(refDir, "bridge"), filepath.Join(refDir, "host-local")} {
		if _, err := os.Stat(f); err != nil {
			return nil, cleanup, fmt.Errorf("%w (run `make build tools`)", err)
		}
	}
	// No agent runs: weir opts into fail-open and does not ask one, so
	// both sides measure the wiring alone.
	weirConf, _ := json.Marshal(map[string]any{
		"cniVersion": version, "name": "bench-weir", "type": "weir", "ipMasq": true,
		"agentWait": "0s", "failClosed": false,
		"ipam": map[string]any{
			"ranges":  []any{map[string]string{"subnet": "10.200.0.0/16"}},
			"dataDir": filepath.Join(tmp, "weir"),
		},
	})
	ps = append(ps, &plugin{name: "weir", bin: weirBin, path: filepath.Dir(weirBin), conf: weirConf})
	for i, masq := range []bool{true, false} {
		name := "ref"
		if !masq {
			name = "ref-nomasq"
		}
		conf, _ := json.Marshal(map[string]any{
			"cniVersion": version, "name": "bench-" + name, "type": "bridge",
			"bridge": fmt.Sprintf("weirbr%d", i), "isGateway": true, "ipMasq": masq,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  []any{[]any{map[string]string{"subnet": fmt.Sprintf("10.%d.0.0/16", 201+i)}}},
				"routes":  []any{map[string]string{"dst": "0.0.0.0/0"}},
				"dataDir": filepath.Join(tmp, name),
			},
		})
		ps = append(ps, &plugin{name: name, bin: filepath.Join(refDir, "bridge"), path: refDir, conf: conf})
	}
	return ps, cleanup, nil
}

// round creates n pod namespaces (untimed), ADDs them all, then DELs them
// all, timing each plugin run.
func round(ctx context.Context, node *testkit.NS, p *plugin, n int, tag string, record bool) error {
	pods := make([]*testkit.NS, 0, n)
	defer func() {
		for _, pod := range pods {
			pod.Delete()
		}
	}()
	for range n {
		pod, err := testkit.NewNS("weirb-p-")
		if err != nil {
			return err
		}
		pods = append(pods, pod)
	}
	for _, cmd := range []string{"ADD", "DEL"} {
		for i, pod := range pods {
			if err := ctx.Err(); err != nil {
				return err
			}
			call := testkit.Call{Command: cmd, ContainerID: fmt.Sprintf("%s-%s-%d", p.name, tag, i),
				Netns: pod.Path(), IfName: "eth0", Path: p.path, Conf: p.conf}
			start := time.Now()
			o, err := call.Exec(ctx, node, p.bin)
			took := time.Since(start)
			if err != nil {
				return err
			}
			if o.Err != nil {
				return fmt.Errorf("%s %s %s: code %d: %s: %s", p.name, cmd, call.ContainerID, o.Err.Code, o.Err.Msg, o.Err.Details)
			}
			if !record {
				continue
			}
			if cmd == "ADD" {
				p.add = append(p.add, took)
			} else {
				p.del = append(p.del, took)
			}
		}
	}
	return nil
}

// report prints, per reference, the medians and the ratio weir/reference.
func report(a *plugin, refs []*plugin) {
	fmt.Printf("\nper-op times, median (p10-p90), n=%d per plugin per op:\n", len(a.add))
	for _, p := range append([]*plugin{a}, refs...) {
		fmt.Printf("  %-10s ADD %-24s DEL %s\n", p.name, spread(p.add), spread(p.del))
	}
	fmt.Println()
	for _, ref := range refs {
		for _, op := range []struct {
			name   string
			da, db []time.Duration
		}{{"ADD", a.add, ref.add}, {"DEL", a.del, ref.del}} {
			ma, mb := quantile(op.da, 0.5), quantile(op.db, 0.5)
			ratio := float64(ma) / float64(mb)
			verdict := "met"
			if ratio > 0.3 {
				verdict = "NOT met"
			}
			fmt.Printf("%s weir %s  %s %s  ratio %.2f  (target <= 0.30: %s)\n",
				op.name, ms(ma), ref.name, ms(mb), ratio, verdict)
		}
	}
}

func spread(d []time.Duration) string {
	return fmt.Sprintf("%s (%s-%s)", ms(quantile(d, 0.5)), ms(quantile(d, 0.1)), ms(quantile(d, 0.9)))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// quantile returns the q-quantile (nearest rank) of d.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q * float64(len(s)-1))
	return s[i]
}
