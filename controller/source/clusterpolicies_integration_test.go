//go:build integration

package source

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	kubeclient "github.com/weir-cni/weir/controller/kube"
	"github.com/weir-cni/weir/integration/kube"
	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/policy"
)

// followCNPs has a KubeSource follow ClusterNetworkPolicies with the
// agent's client of cfg, rechecking the CRD every 200ms.
func followCNPs(t *testing.T, cfg *rest.Config) func(*KubeSource) {
	client, err := kubeclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return func(s *KubeSource) {
		s.ClusterPolicies, s.CRDRecheck = client.ClusterNetworkPolicies(), 200*time.Millisecond
	}
}

// cnpNamed reports, for waitFor, whether the snapshot's cluster policies
// are exactly names, with the given priorities.
func cnpNamed(want map[string]int32) func(policy.Snapshot) string {
	return func(s policy.Snapshot) string {
		got := map[string]int32{}
		for _, p := range s.ClusterPolicies {
			got[p.Name] = p.Spec.Priority
		}
		if !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
			return fmt.Sprintf("cluster policies %v, want %v", got, want)
		}
		return ""
	}
}

// TestKubeSourceClusterPoliciesAgainstAPIServer: with the CRD installed
// the source hands over ClusterNetworkPolicies as they are created,
// changed and deleted (stripped, with their status), and every node with
// its labels and addresses, relabelled.
func TestKubeSourceClusterPoliciesAgainstAPIServer(t *testing.T) {
	c := kube.StartT(t, kube.Options{})
	ctx := context.Background()
	if err := kube.InstallClusterPolicyCRD(ctx, c.RestConfig, kube.CRDExperimental); err != nil {
		t.Fatal(err)
	}
	cnps := cnpclient.NewForConfigOrDie(c.RestConfig)
	w := runSource(t, c.RestConfig, followCNPs(t, c.RestConfig))
	api := cnps.PolicyV1beta1().ClusterNetworkPolicies()
	if _, err := kube.CreateNode(ctx, c.Client, "n1", []string{"10.244.1.0/24"}, "192.168.77.11"); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Create(ctx, fixtures.ClusterPolicy("admin", cnpv1beta1.AdminTier, 10), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := w.waitFor("policy created", cnpNamed(map[string]int32{"admin": 10}))
	if p := s.ClusterPolicies[0]; p.ManagedFields != nil || p.Generation != 1 {
		t.Errorf("cached policy: managedFields %v, generation %d; want stripped, generation 1", p.ManagedFields, p.Generation)
	}
	wantNode := policy.PeerNode{Name: "n1", Labels: map[string]string{corev1.LabelHostname: "n1"},
		Addrs: []netip.Addr{netip.MustParseAddr("192.168.77.11")}}
	if !reflect.DeepEqual(s.Nodes, []policy.PeerNode{wantNode}) {
		t.Errorf("nodes %+v, want %+v", s.Nodes, wantNode)
	}

	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := api.Get(ctx, "admin", metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Spec.Priority = 3
		_, err = api.Update(ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	w.waitFor("policy changed", cnpNamed(map[string]int32{"admin": 3}))

	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Labels["zone"] = "a"
		_, err = c.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	w.waitFor("node relabelled", func(s policy.Snapshot) string {
		if len(s.Nodes) != 1 || s.Nodes[0].Labels["zone"] != "a" {
			return fmt.Sprintf("nodes %+v", s.Nodes)
		}
		return ""
	})

	if err := api.Delete(ctx, "admin", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor("policy deleted", cnpNamed(nil))
}

// TestKubeSourceCRDInstalledAfterStart: without the CRD the source syncs
// and says so; once the CRD is installed it hands over the policies; when
// the CRD is deleted they vanish.
func TestKubeSourceCRDInstalledAfterStart(t *testing.T) {
	c := kube.StartT(t, kube.Options{})
	ctx := context.Background()
	served := make(chan bool, 10)
	w := runSource(t, c.RestConfig, followCNPs(t, c.RestConfig), func(s *KubeSource) {
		s.OnClusterPoliciesServed = func(b bool) { served <- b }
	})
	w.waitFor("sync without the CRD", cnpNamed(nil))
	if got := <-served; got {
		t.Fatal("told the CRD is served before it was installed")
	}

	if err := kube.InstallClusterPolicyCRD(ctx, c.RestConfig, kube.CRDStandard); err != nil {
		t.Fatal(err)
	}
	api := cnpclient.NewForConfigOrDie(c.RestConfig).PolicyV1beta1().ClusterNetworkPolicies()
	if _, err := api.Create(ctx, fixtures.ClusterPolicy("base", cnpv1beta1.BaselineTier, 0), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor("policy after the CRD was installed", cnpNamed(map[string]int32{"base": 0}))
	if got := <-served; !got {
		t.Error("not told the CRD is served")
	}

	if err := kube.DeleteClusterPolicyCRD(ctx, c.RestConfig); err != nil {
		t.Fatal(err)
	}
	w.waitFor("policies gone with the CRD", cnpNamed(nil))
	select {
	case got := <-served:
		if got {
			t.Error("told the CRD is served again")
		}
	case <-time.After(30 * time.Second):
		t.Error("not told the CRD went")
	}
}
