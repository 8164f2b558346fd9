package kube

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// StartT starts a cluster for a test or benchmark, failing it (never
// skipping: CI builds the binaries first) when the cluster cannot start, and
// stops it in t.Cleanup; if the test failed, the logs' tails are printed.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start kube cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster logs (%s):\n%s", c.Dir, c.LogTail(40))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop kube cluster: %v", err)
		}
	})
	return c
}

// clients writes the admin kubeconfig and builds RestConfig and Client.
func (c *Cluster) clients() error {
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := WriteKubeconfig(c.Kubeconfig, c.Host, c.pki.caPEM, c.pki.adminCertPEM, c.pki.adminKeyPEM); err != nil {
		return err
	}
	cfg, err := c.restConfigFrom(c.Kubeconfig)
	if err != nil {
		return err
	}
	c.RestConfig = cfg
	c.Client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	return nil
}

// restConfigFrom loads a kubeconfig file with the cluster's QPS and Burst.
func (c *Cluster) restConfigFrom(path string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	cfg.QPS, cfg.Burst = c.opts.QPS, c.opts.Burst
	return cfg, nil
}

// UserKubeconfig writes a kubeconfig (in the cluster directory, file
// name.kubeconfig) authenticating as user in groups with a client
// certificate from the cluster CA, e.g. ("system:node:n1", "system:nodes")
// or a service account's RBAC identity, and returns its path.
func (c *Cluster) UserKubeconfig(name, user string, groups ...string) (string, error) {
	certPEM, keyPEM, err := c.pki.ClientCert(user, groups...)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, name+".kubeconfig")
	return path, WriteKubeconfig(path, c.Host, c.pki.caPEM, certPEM, keyPEM)
}

// RestConfigFor loads a kubeconfig written by this package (for example by
// KubeconfigFor) with the cluster's QPS and Burst.
func (c *Cluster) RestConfigFor(path string) (*rest.Config, error) { return c.restConfigFrom(path) }

// WriteKubeconfig writes a self-contained kubeconfig (credentials embedded).
func WriteKubeconfig(path, server string, caPEM, certPEM, keyPEM []byte) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["weir"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["weir"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["weir"] = &clientcmdapi.Context{Cluster: "weir", AuthInfo: "weir"}
	cfg.CurrentContext = "weir"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}
