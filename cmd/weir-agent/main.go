// Command weir-agent is weir's per-node controller: it follows cluster state
// (the API server, or a directory of manifests), compiles NetworkPolicy into
// the node's nftables table, keeps routes to other nodes and the node's CNI
// config, and answers the plugin's local socket. Its main only wires flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/weir-cni/weir/conf"
	"github.com/weir-cni/weir/controller"
	"github.com/weir-cni/weir/controller/kube"
	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/controller/source"
	"github.com/weir-cni/weir/dnsproxy"
	"github.com/weir-cni/weir/policy"
)

func main() { os.Exit(run()) }

func run() int {
	var (
		nodeName     = flag.String("node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
		manifests    = flag.String("manifests", "", "read Namespaces, Pods, Nodes, NetworkPolicies and ClusterNetworkPolicies from this directory of YAML/JSON manifests instead of an API server")
		kubeconfig   = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig for the API server (default $KUBECONFIG; empty: in-cluster config)")
		qps          = flag.Float64("kube-api-qps", 50, "client-side rate limit towards the API server")
		clusterCIDRs = flag.String("cluster-cidr", "", "comma-separated pod CIDRs of the whole cluster; traffic from local pods to anything else is masqueraded")
		socket       = flag.String("socket", conf.DefaultAgentSocket, "unix socket for the plugin and weirctl")
		backend      = flag.String("backend", controller.BackendAuto, "auto, nftables or iptables")
		minInterval  = flag.Duration("min-sync-interval", 0, "least time between two syncs; events in between collapse into one")
		poll         = flag.Duration("manifests-poll", 200*time.Millisecond, "how often to look for changed manifests")
		logLevel     = flag.String("log-level", "info", "debug, info, warn or error")
		nodeRoutes   = flag.Bool("node-routes", true, "route other nodes' pod CIDRs via their InternalIP (host-gw)")
		cniConfPath  = flag.String("cni-conf", "", "write this node's CNI conflist here from node.spec.podCIDRs (e.g. /etc/cni/net.d/10-weir.conflist); empty: do not write")
		cniVersion   = flag.String("cni-version", controller.DefaultCNIVersion, "cniVersion of the written CNI config: "+strings.Join(conf.SupportedVersions, ", ")+"; 1.1.0 enables STATUS and GC on runtimes that support it (containerd 1.6/1.7 reject it)")
		dataDir      = flag.String("ipam-data-dir", "", "ipam.dataDir for the written CNI config (default: the plugin's)")
		httpAddr     = flag.String("http-addr", "127.0.0.1:9765", "serve /metrics, /healthz and /readyz here; empty: off")
		pprofOn      = flag.Bool("pprof", false, "also serve Go's profiles (heap, CPU, goroutines) under /debug/pprof/ on --http-addr, behind --metrics-auth like /metrics")
		metricsAuth  = flag.String("metrics-auth", "none", "none, or kube: /metrics asks for a bearer token the API server accepts (TokenReview) and whose user may get the path (SubjectAccessReview), as kube-rbac-proxy does; use it when --http-addr is not loopback")
		failClosed   = flag.Bool("fail-closed", true, "written CNI config: the plugin refuses (CNI error 11, the runtime retries) pods the agent did not confirm in time; --fail-closed=false wires them anyway and logs each")
		denyGroup    = flag.Uint("log-denied-group", 0, "log packets that isolation drops: send them to this NFLOG group (1-65535) and log each with its policies; 0: off")
		jumpCheck    = flag.Duration("jump-check-interval", controller.DefaultJumpCheckInterval, "iptables backend: how often to check that weir's jumps are still first in the built-in chains (kube-proxy prepends its own) and move them back; 0: only on sync")
		denyRate     = flag.Uint("log-denied-rate", 10, "with --log-denied-group: most packets logged per second per pod selection (kernel rate limit; 0: unlimited)")
		passMark     = flag.Uint("tier-pass-mark", uint(policy.DefaultTierPassMark), "the packet mark bit an Admin tier ClusterNetworkPolicy Pass rule sets and weir clears at once, before the packet leaves its chains; choose a bit no other program on the node tests")
		ifPrefix     = flag.String("host-interface-prefix", conf.DefaultHostPrefix, "name prefix of the pods' host-side veths (the plugin's hostInterfacePrefix, also written to the CNI config): packets coming in on them with a source not routed back through them are dropped")
		crdRecheck   = flag.Duration("crd-recheck-interval", 30*time.Second, "how often to ask the API server whether it serves ClusterNetworkPolicies (their CRD may be installed or removed while the agent runs)")
		cnpStatus    = flag.Bool("cnp-status", true, "write the Accepted condition of each ClusterNetworkPolicy; one agent writes, elected with the Lease "+controller.ClusterPolicyStatusLease+" in --lease-namespace (never with --manifests)")
		dnsProxy     = flag.Bool("dns-proxy", true, "nftables backend: run the DNS proxy that enforces ClusterNetworkPolicy domainNames peers (pods those rules select have their DNS steered to it); false: such rules allow nothing and their pods' DNS fails (it is never let past the proxy)")
		dnsPort      = flag.Uint("dns-proxy-port", dnsproxy.DefaultPort, "port of the DNS proxy's transparent listeners")
		dnsMark      = flag.Uint("dns-mark", uint(policy.DefaultDNSMark), "the packet mark bit of DNS queries steered to the proxy; choose a bit no other program on the node tests")
		dnsTable     = flag.Int("dns-route-table", 15353, "routing table of the local route that delivers steered DNS queries to the proxy")
		dnsMinTTL    = flag.Duration("dns-min-ttl", dnsproxy.DefaultMinTTL, "least time a learned address stays allowed")
		dnsMaxTTL    = flag.Duration("dns-max-ttl", dnsproxy.DefaultMaxTTL, "most time a learned address stays allowed without a new answer")
		dnsMaxAddrs  = flag.Uint("dns-max-addresses", uint(policy.DefaultDNSSetSize), "most learned pod . address pairs per domainNames rule and family; past it new answers are counted and logged, their addresses stay denied")
		leaseNS      = flag.String("lease-namespace", envOr("POD_NAMESPACE", metav1.NamespaceSystem), "namespace of the agents' Leases (default $POD_NAMESPACE, else kube-system)")
		gcPercent    = flag.Int("gc-percent", defaultGCPercent, "Go's GOGC for the agent: collect when the heap has grown this percent over the live heap (Go's default, 100, doubles a large cluster's caches and compiler state; lower costs CPU); $GOGC, when set, wins")
		headroom     = flag.Float64("heap-headroom", 0, "after each garbage collection, set Go's memory limit to the live heap plus this fraction of it (at least 32 MiB), so that a large cluster's caches do not double the heap; it costs sync latency: the smaller the fraction, the sooner collections come and the more of them overlap compiles (the README has measured figures); 0: off (GOGC alone), as it is when GOMEMLIMIT is set")
	)
	flag.Parse()
	log := newLogger(*logLevel)
	klog.SetSlogLogger(log)
	if err := validate(*nodeName, *manifests, *cniVersion, *metricsAuth, *ifPrefix, *denyGroup, *denyRate); err != nil {
		log.Error("bad flags", "err", err)
		return 2
	}
	if err := errors.Join(checkMark("--tier-pass-mark", *passMark), checkMark("--dns-mark", *dnsMark),
		checkDNS(*passMark, *dnsMark, *dnsPort, *dnsMaxAddrs), checkHeadroom(*headroom),
		checkGCPercent(*gcPercent)); err != nil {
		log.Error("bad flags", "err", err)
		return 2
	}
	cidrs, err := parseCIDRs(*clusterCIDRs)
	if err != nil {
		log.Error("bad --cluster-cidr", "err", err)
		return 2
	}
	setGCPercent(*gcPercent, os.Getenv("GOGC"))
	if *headroom > 0 && os.Getenv("GOMEMLIMIT") == "" {
		defer followLiveHeap(*headroom)()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	applier, used, err := controller.NewApplier(ctx, *backend)
	if err != nil {
		log.Error("open backend", "err", err)
		return 1
	}
	defer applier.Close()
	source, api, err := newSource(*manifests, *poll, *kubeconfig, float32(*qps), *crdRecheck, log)
	if err != nil {
		log.Error("cluster state source", "err", err)
		return 1
	}
	agent := &controller.Agent{
		Node:         *nodeName,
		ClusterCIDRs: cidrs,
		Source:       source,
		Applier:      applier,
		Log:          log,
		MinInterval:  *minInterval,
		Metrics:      controller.NewMetrics(),
		Pprof:        *pprofOn,
		LogDenied:    policy.DeniedLog{Group: uint16(*denyGroup), Rate: uint32(*denyRate)},

		PodInterfacePrefix: *ifPrefix,
		TierPassMark:       uint32(*passMark),
		DNSMark:            uint32(*dnsMark),
		DNSProxyPort:       uint16(*dnsPort),
		DNSSetSize:         uint32(*dnsMaxAddrs),
		JumpCheckInterval:  *jumpCheck,
		RemoveStale:        func(ctx context.Context) ([]string, error) { return controller.RemoveStale(ctx, applier) },
	}
	if *metricsAuth == "kube" {
		agent.MetricsAuth = &controller.KubeAuth{Tokens: api.client.TokenReviews(), Access: api.client.SubjectAccessReviews()}
	} else if *httpAddr != "" && !loopback(*httpAddr) {
		log.Warn("/metrics is served beyond loopback without authentication; consider --metrics-auth=kube", "http-addr", *httpAddr)
	}
	agent.Metrics.RegisterCounters(applier.Counters, agent.Ruleset, log)
	if *nodeRoutes {
		agent.Reconcilers = append(agent.Reconcilers, &controller.RouteSyncer{Node: *nodeName})
	}
	if *cniConfPath != "" {
		agent.Reconcilers = append(agent.Reconcilers, &controller.CNIConfig{Node: *nodeName, Path: *cniConfPath,
			DataDir: *dataDir, AgentSocket: *socket, FailOpen: !*failClosed, CNIVersion: *cniVersion, HostIfPrefix: *ifPrefix})
	}
	log.Info("weir-agent starting", "node", *nodeName, "manifests", *manifests, "kubeconfig", *kubeconfig, "backend", used, "socket", *socket)
	errc := make(chan error, 4)
	if api != nil && *cnpStatus {
		w := &controller.ClusterPolicyStatus{Client: api.client.ClusterNetworkPolicyStatus(), Latest: api.source.ClusterPolicy,
			Log: log, Lease: &controller.Lease{Leases: api.client.Leases, Namespace: *leaseNS, Name: controller.ClusterPolicyStatusLease,
				Identity: *nodeName, Log: log}}
		agent.ClusterPolicyStatus = w
		go func() { errc <- w.Run(ctx) }()
	}
	if *dnsProxy {
		p, err := startDNSProxy(ctx, applier, dnsproxy.Config{Port: int(*dnsPort), MinTTL: *dnsMinTTL, MaxTTL: *dnsMaxTTL,
			Registerer: agent.Metrics.Registerer(), Log: log}, uint32(*dnsMark), *dnsTable, errc)
		if err != nil {
			log.Error("dns proxy", "err", err)
			return 1
		}
		if p != nil {
			agent.DNSProxy = p
		}
	}
	go func() { errc <- agent.ServeSocket(ctx, *socket) }()
	if *httpAddr != "" {
		go func() { errc <- agent.ServeHTTP(ctx, *httpAddr) }()
	}
	go func() { errc <- agent.Run(ctx) }()
	if *denyGroup != 0 {
		d := &controller.DeniedLogger{Group: uint16(*denyGroup), Log: log, Ruleset: agent.Ruleset}
		agent.Metrics.RegisterDeniedLogger(d)
		go func() { // logging is best effort: the agent runs on without it
			if err := d.Run(ctx); err != nil {
				log.Error("denied-packet logging stopped", "err", err)
			}
		}()
	}
	if err := <-errc; err != nil {
		log.Error("weir-agent stopped", "err", err)
		return 1
	}
	// The kernel keeps the last ruleset: stopping the agent never opens
	// the node up.
	log.Info("weir-agent stopped; the kernel keeps the last ruleset")
	return 0
}

// ifPrefixRE is what --host-interface-prefix accepts: the plugin allows at
// most 6 characters, and the rules quote the prefix as it is.
var ifPrefixRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,6}$`)

// checkMark accepts one bit of a 32-bit packet mark for flag name.
func checkMark(name string, m uint) error {
	if m == 0 || m > math.MaxUint32 || m&(m-1) != 0 {
		return fmt.Errorf("%s %#x: want one bit of a 32-bit mark", name, m)
	}
	return nil
}

// checkDNS checks the DNS proxy's flags against each other.
func checkDNS(passMark, dnsMark, port, maxAddrs uint) error {
	var errs []error
	if passMark == dnsMark {
		errs = append(errs, fmt.Errorf("--dns-mark %#x is --tier-pass-mark's bit", dnsMark))
	}
	if port == 0 || port > math.MaxUint16 {
		errs = append(errs, fmt.Errorf("--dns-proxy-port %d: want 1-65535", port))
	}
	if maxAddrs == 0 || maxAddrs > math.MaxUint32 {
		errs = append(errs, fmt.Errorf("--dns-max-addresses %d: want 1-%d", maxAddrs, uint32(math.MaxUint32)))
	}
	return errors.Join(errs...)
}

func validate(node, manifests, cniVersion, metricsAuth, ifPrefix string, denyGroup, denyRate uint) error {
	var errs []error
	if !ifPrefixRE.MatchString(ifPrefix) {
		errs = append(errs, fmt.Errorf("--host-interface-prefix %q: want 1 to 6 of A-Z a-z 0-9 _ . -", ifPrefix))
	}
	switch metricsAuth {
	case "none":
	case "kube":
		if manifests != "" {
			errs = append(errs, errors.New("--metrics-auth=kube needs an API server, not --manifests"))
		}
	default:
		errs = append(errs, fmt.Errorf("--metrics-auth %q: want none or kube", metricsAuth))
	}
	if !slices.Contains(conf.SupportedVersions, cniVersion) {
		errs = append(errs, fmt.Errorf("--cni-version %q is not supported (%s)", cniVersion, strings.Join(conf.SupportedVersions, ", ")))
	}
	if denyGroup > math.MaxUint16 {
		errs = append(errs, fmt.Errorf("--log-denied-group %d is not an NFLOG group (1-65535; 0: off)", denyGroup))
	}
	if uint64(denyRate) > math.MaxUint32 {
		errs = append(errs, fmt.Errorf("--log-denied-rate %d is out of range (0-%d; 0: unlimited)", denyRate, uint32(math.MaxUint32)))
	}
	if node == "" {
		errs = append(errs, errors.New("--node-name (or $NODE_NAME) is required"))
	}
	if manifests != "" {
		if st, err := os.Stat(manifests); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("--manifests %q is not a directory", manifests))
		}
	}
	return errors.Join(errs...)
}

// apiServer is what the agent uses of the API server: its client, and
// the source that follows it.
type apiServer struct {
	client *kube.Client
	source *source.KubeSource
}

// newSource returns the manifests source when a directory is given, and
// the API-server source otherwise, with the API server's clients.
func newSource(manifests string, poll time.Duration, kubeconfig string, qps float32, crdRecheck time.Duration,
	log *slog.Logger) (snapshot.Source, *apiServer, error) {
	if manifests != "" {
		return &source.DirSource{Dir: manifests, Interval: poll}, nil, nil
	}
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("api server config (use --kubeconfig or run in a pod): %w", err)
	}
	cfg.QPS, cfg.Burst = qps, int(2*qps)
	cfg.UserAgent = "weir-agent"
	client, err := kube.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	src := source.NewKubeSource(client, 0)
	src.ClusterPolicies, src.CRDRecheck = client.ClusterNetworkPolicies(), crdRecheck
	src.OnWatchError = func(resource string, err error) {
		log.Warn("list/watch failed; retrying, kernel keeps the last ruleset", "resource", resource, "err", err)
	}
	src.OnClusterPoliciesServed = func(served bool) {
		if served {
			log.Info("the API server serves ClusterNetworkPolicies: enforcing them")
			return
		}
		log.Warn("the API server does not serve ClusterNetworkPolicies (policy.networking.k8s.io/v1beta1; install the CRD of network-policy-api v0.3.0): enforcing NetworkPolicy only until it does",
			"recheck", crdRecheck)
	}
	return src, &apiServer{client: client, source: src}, nil
}

// envOr returns the environment variable key, or def when it is empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// loopback reports whether a listen address binds loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func parseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
