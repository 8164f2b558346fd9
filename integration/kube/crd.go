package kube

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// The ClusterNetworkPolicy CRD comes from the network-policy-api module
// weir builds with, as its release ships it (config/crd/<channel>): no
// copy of it lives in weir.

// ClusterPolicyCRDName is the CRD's name.
const ClusterPolicyCRDName = "clusternetworkpolicies.policy.networking.k8s.io"

// The CRD channels of network-policy-api: experimental adds named ports,
// nodes and domainNames peers.
const (
	CRDStandard     = "standard"
	CRDExperimental = "experimental"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// ClusterPolicyCRDFile returns the path of the CRD of channel in the
// module cache, found with `go list -m` (run inside weir's module).
func ClusterPolicyCRDFile(ctx context.Context, channel string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/network-policy-api").Output()
	if err != nil {
		return "", fmt.Errorf("find the network-policy-api module: go list -m: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("find the network-policy-api module: not downloaded (go mod download)")
	}
	return filepath.Join(dir, "config", "crd", channel, "policy.networking.k8s.io_clusternetworkpolicies.yaml"), nil
}

// InstallClusterPolicyCRD creates the ClusterNetworkPolicy CRD of channel,
// unmodified, and waits until the API server reports it Established.
func InstallClusterPolicyCRD(ctx context.Context, cfg *rest.Config, channel string) error {
	path, err := ClusterPolicyCRDFile(ctx, channel)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read the CRD: %w", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var crd unstructured.Unstructured
	if err := crd.UnmarshalJSON(js); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	crds, err := crdClient(cfg)
	if err != nil {
		return err
	}
	if _, err := crds.Create(ctx, &crd, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create CRD %s: %w", crd.GetName(), err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := crds.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("wait for CRD %s to be established: %w", crd.GetName(), err)
	}
	return nil
}

// DeleteClusterPolicyCRD deletes the ClusterNetworkPolicy CRD, with every
// ClusterNetworkPolicy, and waits until it is gone.
func DeleteClusterPolicyCRD(ctx context.Context, cfg *rest.Config) error {
	crds, err := crdClient(cfg)
	if err != nil {
		return err
	}
	if err := crds.Delete(ctx, ClusterPolicyCRDName, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete CRD %s: %w", ClusterPolicyCRDName, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := crds.Get(ctx, ClusterPolicyCRDName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("wait for CRD %s to go: %w", ClusterPolicyCRDName, err)
	}
	return nil
}

func crdClient(cfg *rest.Config) (dynamic.ResourceInterface, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	return dyn.Resource(crdResource), nil
}
