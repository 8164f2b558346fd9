// Command bench-datapath measures what weir's NetworkPolicy enforcement costs the
// data path between two pods: single-stream TCP throughput, request/response
// latency (64-byte ping-pong on one connection) and new-connection rate
// (connect, request, response, close), with client and server threads
// pinned to two CPUs, in interleaved rounds, reporting medians and ratios.
//
// The cluster has 10,000 pods and 1,000 policies (see snapshot.go); the
// policies select both real pods, and the test connection is allowed only
// by a policy rule, so every new connection walks the policy. Before
// measuring, a probe shows that a port no policy allows is dropped.
//
// With -learned N, a ClusterNetworkPolicy with a domainNames rule holds
// the client, and its learned-address set holds N pod . address pairs,
// written through the agent's Learner (learned.go): the client's egress to
// the server is allowed by the lookup of that set and nothing else, as a
// trace and a probe before and after learning show.
//
// Configurations:
//   - none: no netfilter hook in the node namespace. By default the table
//     stays in the kernel with its base chains deleted (no hook, no
//     conntrack: checked each round), because a full apply of this table
//     takes seconds; -full-apply deletes the whole table instead and
//     applies it whole before every nft round.
//   - nft: the table with its base chains, added back incrementally.
//   - nft-bare (with -breakdown): the same table compiled without the
//     NetworkPolicies and the -learned policy — conntrack, NAT and the
//     skeleton that any stateful enforcement pays — so that nft / nft-bare
//     is the policy walk alone.
//     Two tables take turns in the namespace by full applies.
//   - conntrack (with -breakdown): one forward chain whose only rule is
//     `ct state established,related accept`, the floor of any stateful
//     filtering in netfilter; nft / conntrack is what weir adds to it.
//   - conntrack+nat, conntrack+spoof (with -parts nat,spoof): the floor
//     plus one base chain of weir's table (the masquerade chain, which
//     brings NAT into the namespace; the anti-spoofing chain, a FIB lookup
//     per packet from a pod), to find which part of the skeleton costs
//     what.
//   - iptables (with -iptables, when the backend is built in: iptables.go):
//     the same ruleset through iptables-restore, applied once on a second,
//     identical node, because one apply takes about a minute.
//
// It needs root and touches the kernel only inside the namespaces it
// creates (nodes and pods wired by the real weir plugin); it removes them
// on exit, also on Ctrl-C. It prints numbers and targets and never judges
// them: the exit status is non-zero only when it could not measure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() { os.Exit(run()) }

type options struct {
	weir                 string
	rounds               int
	duration             time.Duration
	pods, policies       int
	clusterPolicies      int
	learned              int
	iptables             bool
	fullApply            bool
	breakdown            bool
	parts                []string
	clientCPU, serverCPU int
	verbose              bool
}

func run() int {
	var o options
	flag.StringVar(&o.weir, "weir", "", "weir plugin binary (default: build ./cmd/weir into a temp dir)")
	flag.IntVar(&o.rounds, "rounds", 9, "interleaved rounds per configuration")
	flag.DurationVar(&o.duration, "duration", time.Second, "length of each measurement (three per round)")
	flag.IntVar(&o.pods, "pods", 10000, "pods in the cluster")
	flag.IntVar(&o.policies, "policies", 1000, "NetworkPolicies in the cluster")
	flag.IntVar(&o.clusterPolicies, "cluster-policies", 0, "ClusterNetworkPolicies in the cluster, both tiers (synth.Options.ClusterPolicies: each real pod is held by one in a hundred)")
	flag.IntVar(&o.learned, "learned", 0, "addresses learned from DNS answers: adds a ClusterNetworkPolicy whose domainNames rule alone allows the client's egress to the server, and fills its set with this many pod . address pairs, client . server among them (see learned.go)")
	flag.BoolVar(&o.iptables, "iptables", false, "also measure the iptables backend")
	flag.BoolVar(&o.fullApply, "full-apply", false, "baseline with no table at all: delete the table before each baseline round and apply it whole before each nft round (slow with large tables)")
	flag.BoolVar(&o.breakdown, "breakdown", false, "also measure nft-bare (weir's table compiled without policies: conntrack, NAT, the skeleton) and conntrack (one stateful rule), to split the cost of the table into conntrack, weir's skeleton and the policy walk (implies full applies)")
	flag.IntVar(&o.clientCPU, "client-cpu", 0, "CPU the client thread is pinned to")
	flag.IntVar(&o.serverCPU, "server-cpu", 1, "CPU the server thread is pinned to")
	flag.BoolVar(&o.verbose, "v", false, "print every round's values")
	partList := flag.String("parts", "", "comma-separated parts of weir's skeleton (nat, spoof) each measured alone on top of the conntrack floor, as conntrack+<part> (implies full applies)")
	quick := flag.Bool("quick", false, "smoke run: 2 rounds of 0.3 s measurements")
	flag.Parse()
	if *quick {
		o.rounds, o.duration = 2, 300*time.Millisecond
	}
	for _, p := range strings.Split(*partList, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if _, ok := parts[p]; !ok {
			fmt.Fprintf(os.Stderr, "bench-datapath: unknown part %q (nat, spoof)\n", p)
			return 2
		}
		o.parts = append(o.parts, p)
	}
	// two tables take turns only by full applies
	o.fullApply = o.fullApply || o.breakdown || len(o.parts) > 0
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-datapath:", err)
		return 1
	}
	return 0
}

func (o options) validate() error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("needs root (it creates network namespaces)"))
	}
	if o.rounds < 1 || o.duration <= 0 {
		errs = append(errs, errors.New("-rounds and -duration must be positive"))
	}
	if o.learned < 0 || o.learned > maxLearned {
		errs = append(errs, fmt.Errorf("-learned %d: want 0-%d", o.learned, maxLearned))
	}
	if o.learned > 0 && o.iptables {
		errs = append(errs, errors.New("-learned and -iptables: the iptables backend has no DNS proxy nor learned-address sets"))
	}
	if o.pods < 2 || o.policies < 10 {
		errs = append(errs, errors.New("-pods must be at least 2 and -policies at least 10 (one of each shape per namespace)"))
	}
	n := runtime.NumCPU()
	for _, c := range []int{o.clientCPU, o.serverCPU} {
		if c < 0 || c >= n {
			errs = append(errs, fmt.Errorf("cpu %d: this machine has cpus 0..%d", c, n-1))
		}
	}
	return errors.Join(errs...)
}
