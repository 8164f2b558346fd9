//go:build integration

package kube

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/weir-cni/weir/internal/fixtures"
)

// TestClusterPolicyCRD installs the experimental CRD as the module ships
// it: a policy with an experimental field (a nodes peer) round-trips, and
// deleting the CRD takes the policies with it.
func TestClusterPolicyCRD(t *testing.T) {
	c := StartT(t, Options{})
	ctx := context.Background()
	if err := InstallClusterPolicyCRD(ctx, c.RestConfig, CRDExperimental); err != nil {
		t.Fatal(err)
	}
	cnps := cnpclient.NewForConfigOrDie(c.RestConfig).PolicyV1beta1().ClusterNetworkPolicies()
	p := fixtures.ClusterPolicy("to-nodes", cnpv1beta1.AdminTier, 5)
	p.Spec.Egress = []cnpv1beta1.ClusterNetworkPolicyEgressRule{{Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
		To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Nodes: &metav1.LabelSelector{}}}}}
	if _, err := cnps.Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := cnps.Get(ctx, "to-nodes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Egress) != 1 || got.Spec.Egress[0].To[0].Nodes == nil {
		t.Errorf("stored egress %+v: the nodes peer (experimental channel) was pruned", got.Spec.Egress)
	}
	if err := DeleteClusterPolicyCRD(ctx, c.RestConfig); err != nil {
		t.Fatal(err)
	}
	if _, err := cnps.Get(ctx, "to-nodes", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after the CRD went: %v, want not found", err)
	}
}
