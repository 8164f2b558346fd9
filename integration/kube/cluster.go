package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options tune Start; the zero value is a working cluster.
type Options struct {
	// Build runs hack/build-k8s.sh when the binaries are missing (also
	// when $WEIR_BUILD_K8S=1). The first build on a machine takes ~30 min.
	Build bool
	// Dir holds certificates, etcd data, logs and kubeconfigs; default a
	// fresh temporary directory that Stop removes.
	Dir string
	// StartTimeout bounds waiting for etcd health and /readyz (default 2m).
	StartTimeout time.Duration
	// QPS and Burst of RestConfig and Client; default -1 (no client-side
	// rate limit: client-go's 5/10 throttles benchmarks).
	QPS   float32
	Burst int
	// ServiceCIDR is --service-cluster-ip-range (default 10.96.0.0/16).
	ServiceCIDR string
	// APIServerArgs are appended to kube-apiserver's flags (later wins).
	APIServerArgs []string
	// Logf reports progress (start times, pids); default silent.
	Logf func(format string, args ...any)
}

// Cluster is a running etcd + kube-apiserver on loopback.
type Cluster struct {
	// Dir is the cluster's state directory.
	Dir string
	// Kubeconfig is an admin (system:masters) kubeconfig file with
	// embedded credentials, server https://127.0.0.1:<port>.
	Kubeconfig string
	// Host is the API server's URL.
	Host string
	// RestConfig and Client are admin clients with QPS/Burst raised.
	RestConfig *rest.Config
	Client     kubernetes.Interface
	// EtcdURL is etcd's client URL.
	EtcdURL  string
	Binaries Binaries

	opts    Options
	ownDir  bool
	pki     *PKI
	apiPort int
	apiArgs []string

	mu        sync.Mutex
	etcd      *proc
	apiserver *proc
	relay     *relay
	stopped   bool
}

// Start builds (if asked) and finds the binaries, makes the certificates,
// starts etcd and kube-apiserver on free loopback ports, waits until
// /readyz answers and returns admin clients. Call Stop when done.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	opts.defaults()
	bins, err := FindBinaries(ctx, opts.Build || os.Getenv("WEIR_BUILD_K8S") == "1")
	if err != nil {
		return nil, err
	}
	c = &Cluster{Binaries: bins, opts: opts, Dir: opts.Dir}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "weir-kube-"); err != nil {
			return nil, fmt.Errorf("make cluster dir: %w", err)
		}
		c.ownDir = true
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	_, svcNet, err := net.ParseCIDR(opts.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("service cidr %q: %w", opts.ServiceCIDR, err)
	}
	svcIP := append(net.IP(nil), svcNet.IP.To16()...)
	svcIP[len(svcIP)-1]++ // the kubernetes service takes the range's first address
	if c.pki, err = NewPKI(c.Dir, svcIP); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	c.apiPort = ports[2]
	c.Host = "https://" + hostPort(c.apiPort)
	c.EtcdURL = "http://" + hostPort(ports[0])

	start := time.Now()
	if err := c.startEtcd(ctx, ports[0], ports[1]); err != nil {
		return nil, err
	}
	c.opts.Logf("etcd ready in %v (pid %d, %s)", time.Since(start).Round(time.Millisecond), c.etcd.Pid(), c.EtcdURL)
	c.apiArgs = c.apiserverArgs()
	if err := c.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := c.clients(); err != nil {
		return nil, err
	}
	return c, nil
}

func (o *Options) defaults() {
	if o.StartTimeout <= 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.QPS == 0 {
		o.QPS = -1
	}
	if o.ServiceCIDR == "" {
		o.ServiceCIDR = "10.96.0.0/16"
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

func (c *Cluster) startEtcd(ctx context.Context, clientPort, peerPort int) error {
	client, peer := "http://"+hostPort(clientPort), "http://"+hostPort(peerPort)
	args := []string{
		"--name=weir", "--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=weir=" + peer,
		"--unsafe-no-fsync", "--log-level=warn",
	}
	p, err := startProc("etcd", c.Binaries.Etcd, args, filepath.Join(c.Dir, "etcd.log"))
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.etcd = p
	c.mu.Unlock()
	return c.waitHealthy(ctx, p, http.DefaultClient, client+"/health")
}

func (c *Cluster) apiserverArgs() []string {
	p := c.pki
	args := []string{
		"--etcd-servers=" + c.EtcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", c.apiPort),
		"--cert-dir=" + filepath.Join(c.Dir, "apiserver-certs"),
		"--tls-cert-file=" + p.ServingCert, "--tls-private-key-file=" + p.ServingKey,
		"--client-ca-file=" + p.CAFile,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.SAPub,
		"--service-account-signing-key-file=" + p.SAKey,
		"--service-cluster-ip-range=" + c.opts.ServiceCIDR,
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=false",
	}
	return append(args, c.opts.APIServerArgs...)
}

// StartAPIServer (re)starts kube-apiserver on its port and waits for
// /readyz; with StopAPIServer it simulates an outage while etcd keeps the
// data.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return errors.New("start kube-apiserver: cluster stopped")
	}
	if c.apiserver != nil && !c.apiserver.exited() {
		c.mu.Unlock()
		return errors.New("start kube-apiserver: already running")
	}
	c.mu.Unlock()
	start := time.Now()
	p, err := startProc("kube-apiserver", c.Binaries.APIServer, c.apiArgs, filepath.Join(c.Dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.apiserver = p
	c.mu.Unlock()
	hc, err := c.adminHTTP()
	if err != nil {
		return err
	}
	if err := c.waitHealthy(ctx, p, hc, c.Host+"/readyz"); err != nil {
		return err
	}
	c.opts.Logf("kube-apiserver ready in %v (pid %d, %s)", time.Since(start).Round(time.Millisecond), p.Pid(), c.Host)
	return nil
}

// StopAPIServer kills kube-apiserver (SIGKILL to its process group); etcd
// and the relays keep running, so clients see connections refused.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	p := c.apiserver
	c.mu.Unlock()
	return p.kill()
}

// APIServerPID returns kube-apiserver's pid, 0 when it is not running.
func (c *Cluster) APIServerPID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver == nil || c.apiserver.exited() {
		return 0
	}
	return c.apiserver.Pid()
}

// Stop closes the relays, kills kube-apiserver and etcd and removes the
// directory Start made. It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	c.stopped = true
	r, api, etcd := c.relay, c.apiserver, c.etcd
	c.relay = nil
	c.mu.Unlock()
	var errs []error
	if r != nil {
		r.close()
	}
	errs = append(errs, api.kill(), etcd.kill())
	if c.ownDir && c.Dir != "" {
		errs = append(errs, os.RemoveAll(c.Dir))
	}
	return errors.Join(errs...)
}

// LogTail returns the last n lines of kube-apiserver's and etcd's logs.
func (c *Cluster) LogTail(n int) string {
	return "kube-apiserver:\n" + Tail(filepath.Join(c.Dir, "kube-apiserver.log"), n) +
		"\netcd:\n" + Tail(filepath.Join(c.Dir, "etcd.log"), n)
}

// waitHealthy polls url until it answers 200, p exits, or the start
// timeout passes.
func (c *Cluster) waitHealthy(ctx context.Context, p *proc, hc *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return p.failure("exited before " + url + " was healthy")
		case <-ctx.Done():
			return p.failure(fmt.Sprintf("not healthy at %s: %v", url, ctx.Err()))
		case <-tick.C:
		}
	}
}

// adminHTTP is an HTTPS client that trusts the cluster CA and presents the
// admin certificate.
func (c *Cluster) adminHTTP() (*http.Client, error) {
	cert, err := tls.X509KeyPair(c.pki.adminCertPEM, c.pki.adminKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("load admin cert: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.pki.ca)
	return &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		}},
	}, nil
}
