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
}

func TestReadManifestsRejectsBadInput(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"unknown kind", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", "unsupported kind"},
		{"unknown field (typo)", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelectr: {}}\n", "podSelectr"},
		{"broken yaml", "apiVersion: v1\nkind: [\n", "document 1"},
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
