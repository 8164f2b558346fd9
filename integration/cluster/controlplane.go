package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/weir-cni/weir/integration/kube"
)

const apiPort = 6443

// server is the API server's URL on the underlay.
func (c *Cluster) server() string { return fmt.Sprintf("https://%s:%d", c.CPIP, apiPort) }

// controlPlane makes the certificates and starts etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler in the control plane's
// namespace.
func (c *Cluster) controlPlane(ctx context.Context) error {
	pkiDir := filepath.Join(c.Dir, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return fmt.Errorf("make %s: %w", pkiDir, err)
	}
	svcIP := c.ServiceCIDR.Addr().Next()
	var err error
	c.pki, err = kube.NewPKI(pkiDir, net.IP(c.CPIP.AsSlice()), net.IP(svcIP.AsSlice()))
	if err != nil {
		return err
	}
	if err := c.pki.AdminKubeconfig(c.Kubeconfig, c.server()); err != nil {
		return err
	}
	kc := func(name, user string, groups ...string) (string, error) {
		p := filepath.Join(c.Dir, name+".kubeconfig")
		return p, c.pki.UserKubeconfig(p, c.server(), user, groups...)
	}
	kcmConfig, err := kc("kube-controller-manager", "system:kube-controller-manager")
	if err != nil {
		return err
	}
	schedConfig, err := kc("kube-scheduler", "system:kube-scheduler")
	if err != nil {
		return err
	}
	// The API server's identity towards kubelets (exec, logs, port-forward).
	kubeletClient, err := c.writeClientCert(pkiDir, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		return err
	}
	cp := where{netns: c.CPNetns}
	b := c.Binaries
	if _, err := c.start("etcd", cp, nil, b.Etcd,
		"--name=weir-e2e", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=weir-e2e=http://127.0.0.1:2380",
		"--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return err
	}
	p := c.pki
	if _, err := c.start("kube-apiserver", cp, nil, b.APIServer,
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", "--advertise-address="+c.CPIP.String(),
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir="+filepath.Join(c.Dir, "apiserver-certs"),
		"--tls-cert-file="+p.ServingCert, "--tls-private-key-file="+p.ServingKey,
		"--client-ca-file="+p.CAFile,
		"--kubelet-client-certificate="+kubeletClient[0], "--kubelet-client-key="+kubeletClient[1],
		"--kubelet-preferred-address-types=InternalIP",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.SAPub,
		"--service-account-signing-key-file="+p.SAKey,
		"--service-cluster-ip-range="+c.ServiceCIDR.String(),
		"--profiling=false"); err != nil {
		return err
	}
	if err := c.clients(); err != nil {
		return err
	}
	if err := poll(ctx, "kube-apiserver /readyz", 3*time.Minute, 200*time.Millisecond, func() error {
		_, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		return err
	}
	c.logf("kube-apiserver ready at %s", c.server())
	if _, err := c.start("kube-controller-manager", cp, nil, b.ControllerManager,
		"--kubeconfig="+kcmConfig,
		"--authentication-kubeconfig="+kcmConfig, "--authorization-kubeconfig="+kcmConfig,
		"--bind-address=127.0.0.1", "--leader-elect=false",
		"--allocate-node-cidrs=true", "--cluster-cidr="+c.ClusterCIDR.String(), "--node-cidr-mask-size=24",
		"--service-cluster-ip-range="+c.ServiceCIDR.String(),
		"--service-account-private-key-file="+p.SAKey, "--root-ca-file="+p.CAFile,
		"--use-service-account-credentials=true",
		"--configure-cloud-routes=false",
		"--profiling=false"); err != nil {
		return err
	}
	if _, err := c.start("kube-scheduler", cp, nil, b.Scheduler,
		"--kubeconfig="+schedConfig,
		"--authentication-kubeconfig="+schedConfig, "--authorization-kubeconfig="+schedConfig,
		"--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false"); err != nil {
		return err
	}
	return nil
}

// writeClientCert issues a client certificate and writes it as
// dir/name.crt and dir/name.key.
func (c *Cluster) writeClientCert(dir, name, user string, groups ...string) ([2]string, error) {
	certPEM, keyPEM, err := c.pki.ClientCert(user, groups...)
	if err != nil {
		return [2]string{}, err
	}
	files := [2]string{filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")}
	for i, data := range [][]byte{certPEM, keyPEM} {
		if err := os.WriteFile(files[i], data, 0o600); err != nil {
			return files, fmt.Errorf("write %s: %w", files[i], err)
		}
	}
	return files, nil
}
