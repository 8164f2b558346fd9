package source

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/policy"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

func TestReadManifestsBuildsSnapshot(t *testing.T) {
	o, err := ReadManifests("testdata/manifests")
	if err != nil {
		t.Fatal(err)
	}
	s := snapshot.Build("node-a", []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}, o)
	wantNode := policy.Node{
		Name:     "node-a",
		Addrs:    []netip.Addr{netip.MustParseAddr("192.168.50.2")},
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")},
	}
	if !reflect.DeepEqual(s.Node, wantNode) {
		t.Errorf("node = %+v, want %+v", s.Node, wantNode)
	}
	wantNS := []policy.Namespace{
		{Name: "dev", Labels: map[string]string{"kubernetes.io/metadata.name": "dev"}},
		{Name: "prod", Labels: map[string]string{"kubernetes.io/metadata.name": "prod", "purpose": "production"}},
	}
	if !reflect.DeepEqual(s.Namespaces, wantNS) {
		t.Errorf("namespaces = %+v, want %+v", s.Namespaces, wantNS)
	}
	wantPods := []policy.Pod{
		{Namespace: "prod", Name: "web", Node: "node-a", Labels: map[string]string{"app": "web"},
			IPs:   []netip.Addr{netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("fd00:10:244:1::5")},
			Ports: []policy.ContainerPort{{Name: "http", Protocol: "TCP", Port: 8080}, {Name: "dns", Protocol: "UDP", Port: 53}}},
		{Namespace: "dev", Name: "client", Node: "node-b", IPs: []netip.Addr{netip.MustParseAddr("10.244.2.7")}},
	}
	if !reflect.DeepEqual(s.Pods, wantPods) {
		t.Errorf("pods (pod without IP must be left out) =\n%+v\nwant\n%+v", s.Pods, wantPods)
	}
	if len(s.Policies) != 1 || s.Policies[0].Namespace != "default" || s.Policies[0].Name != "web-allow-prod" {
		t.Errorf("policies = %v", s.Policies)
	}
	wantCNPs := []struct {
		name     string
		tier     cnpv1beta1.Tier
		priority int32
		ingress  int
		egress   int
	}{{"baseline-isolate", cnpv1beta1.BaselineTier, 0, 1, 0}, {"deny-metadata", cnpv1beta1.AdminTier, 10, 0, 1}}
	if len(s.ClusterPolicies) != len(wantCNPs) {
		t.Fatalf("%d cluster policies, want %d", len(s.ClusterPolicies), len(wantCNPs))
	}
	for i, w := range wantCNPs {
		p := s.ClusterPolicies[i]
		if p.Name != w.name || p.Namespace != "" || p.APIVersion != cnpv1beta1.GroupVersion.String() || p.Spec.Tier != w.tier ||
			p.Spec.Priority != w.priority || len(p.Spec.Ingress) != w.ingress || len(p.Spec.Egress) != w.egress {
			t.Errorf("cluster policy %d = %s/%s %s %+v, want %+v (cluster-scoped, v1beta1)", i, p.Namespace, p.Name, p.APIVersion, p.Spec, w)
		}
	}
	if r := s.ClusterPolicies[0].Spec.Ingress[0].Protocols[0].TCP.DestinationPort.Range; r == nil || r.Start != 8000 || r.End != 9000 {
		t.Errorf("v1alpha2 port range = %+v, want 8000-9000", r)
	}
}

func TestReadManifestsRejectsBadInput(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"unknown kind", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", "unsupported kind"},
		{"unknown field (typo)", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelectr: {}}\n", "podSelectr"},
		{"broken yaml", "apiVersion: v1\nkind: [\n", "document 1"},
		{"unknown field in a ClusterNetworkPolicy", "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\n" +
			"metadata: {name: p}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingres: []}\n", "ingres"},
		{"unknown field in a v1alpha2 ClusterNetworkPolicy", "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n" +
			"metadata: {name: p}\nspec: {tier: Admin, priority: 1, subjekt: {namespaces: {}}}\n", "subjekt"},
		{"ClusterNetworkPolicy of a version the CRD does not serve", "apiVersion: policy.networking.k8s.io/v1alpha1\n" +
			"kind: ClusterNetworkPolicy\nmetadata: {name: p}\n", "unsupported kind"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "x.yaml"), []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadManifests(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "x.yaml") {
				t.Errorf("err = %v, want one naming x.yaml and %q", err, tc.want)
			}
		})
	}
}
