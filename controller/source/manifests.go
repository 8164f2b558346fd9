package source

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/weir-cni/weir/controller/snapshot"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

var (
	scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(scheme, serializer.EnableStrict)
)

func init() {
	_ = corev1.AddToScheme(scheme)
	_ = networkingv1.AddToScheme(scheme)
	_ = cnpv1beta1.Install(scheme)
	// The CRD serves v1alpha2 with v1beta1's schema and no conversion:
	// its documents decode, as strictly, into the v1beta1 type.
	scheme.AddKnownTypeWithName(cnpv1alpha2.SchemeGroupVersion.WithKind("ClusterNetworkPolicy"), &cnpv1beta1.ClusterNetworkPolicy{})
}

// ReadManifests reads every *.yaml, *.yml and *.json file in dir (not
// recursive), each holding one or more documents (YAML "---" separated, or
// a List). It knows Namespaces, Pods, Nodes, NetworkPolicies and
// ClusterNetworkPolicies (policy.networking.k8s.io v1beta1, or v1alpha2,
// read as v1beta1); any other kind, an unknown field, or a document that
// does not decode is an error naming file and document, so a typo never
// silently drops a policy.
func ReadManifests(dir string) (snapshot.Objects, error) {
	var o snapshot.Objects
	files, err := manifestFiles(dir)
	if err != nil {
		return o, err
	}
	var errs []error
	for _, f := range files {
		if err := readFile(f, &o); err != nil {
			errs = append(errs, err)
		}
	}
	return o, errors.Join(errs...)
}

func manifestFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read manifests dir: %w", err)
	}
	var out []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	sort.Strings(out)
	return out, nil
}

func readFile(path string, o *snapshot.Objects) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for doc := 1; ; doc++ {
		var raw runtime.RawExtension
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
		raw.Raw = bytes.TrimSpace(raw.Raw)
		if len(raw.Raw) == 0 || string(raw.Raw) == "null" {
			continue
		}
		if err := addObject(raw.Raw, o); err != nil {
			return fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
	}
}

func addObject(data []byte, o *snapshot.Objects) error {
	obj, gvk, err := codecs.UniversalDeserializer().Decode(data, nil, nil)
	if err != nil {
		if runtime.IsNotRegisteredError(err) {
			return fmt.Errorf("unsupported kind (want Namespace, Pod, Node, NetworkPolicy, ClusterNetworkPolicy or a List of them): %w", err)
		}
		return err
	}
	switch v := obj.(type) {
	case *corev1.Namespace:
		o.Namespaces = append(o.Namespaces, v)
	case *corev1.Pod:
		o.Pods = append(o.Pods, snapshot.NewPod(inDefault(v)))
	case *corev1.Node:
		o.Nodes = append(o.Nodes, v)
	case *networkingv1.NetworkPolicy:
		o.Policies = append(o.Policies, inDefault(v))
	case *cnpv1beta1.ClusterNetworkPolicy:
		// Cluster-scoped: the API server drops a namespace, and the
		// version read is v1beta1's whatever the document said.
		v.Namespace = ""
		v.APIVersion = cnpv1beta1.GroupVersion.String()
		o.ClusterPolicies = append(o.ClusterPolicies, v)
	case *corev1.List:
		for i, item := range v.Items {
			if err := addObject(item.Raw, o); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
	default:
		return fmt.Errorf("unsupported kind %s", gvk.Kind)
	}
	return nil
}

// inDefault puts a namespaced object that names no namespace in
// "default", as kubectl apply would.
func inDefault[T metav1.Object](obj T) T {
	if obj.GetNamespace() == "" {
		obj.SetNamespace(metav1.NamespaceDefault)
	}
	return obj
}
