// Package deploy holds the manifests that install weir on a cluster; its
// test checks they decode as the API types they claim to be.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

func TestManifestsDecodeStrictly(t *testing.T) {
	data, err := os.ReadFile("weir.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	kinds := map[string]bool{}
	var ds *appsv1.DaemonSet
	for {
		var raw runtime.RawExtension
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode(raw.Raw, nil, nil)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		kinds[gvk.Kind] = true
		if d, ok := obj.(*appsv1.DaemonSet); ok {
			ds = d
		}
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"} {
		if !kinds[k] {
			t.Errorf("weir.yaml lacks a %s", k)
		}
	}
	if ds == nil || !ds.Spec.Template.Spec.HostNetwork {
		t.Fatal("the agent must run with hostNetwork")
	}
	args := strings.Join(ds.Spec.Template.Spec.Containers[0].Command, " ")
	for _, want := range []string{"--cni-conf=", "--cluster-cidr="} {
		if !strings.Contains(args, want) {
			t.Errorf("agent command %q lacks %s", args, want)
		}
	}
}
