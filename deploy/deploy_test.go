// Package deploy holds the manifests that install weir on a cluster; its
// test checks they decode as the API types they claim to be.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/weir-cni/weir/internal/textdiff"
)

func TestManifestsDecodeStrictly(t *testing.T) {
	kinds := map[string]bool{}
	for _, obj := range objects(t) {
		kinds[obj.GetObjectKind().GroupVersionKind().Kind] = true
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "DaemonSet"} {
		if !kinds[k] {
			t.Errorf("weir.yaml lacks a %s", k)
		}
	}
	ds := daemonSet(t)
	if !ds.Spec.Template.Spec.HostNetwork {
		t.Fatal("the agent must run with hostNetwork")
	}
	args := strings.Join(ds.Spec.Template.Spec.Containers[0].Command, " ")
	textdiff.Mentions(t, "agent command", args, "--cni-conf=", "--cluster-cidr=")
}

// TestAgentWritesAFailClosedConfig pins that the shipped agent writes a
// conflist whose plugin refuses pods the agent did not confirm. The
// manifest says --fail-closed=true itself rather than trusting the
// image's default, which older agents had the other way round.
func TestAgentWritesAFailClosedConfig(t *testing.T) {
	ds := daemonSet(t)
	var agent *corev1.Container
	for i, c := range ds.Spec.Template.Spec.Containers {
		if len(c.Command) > 0 && strings.HasSuffix(c.Command[0], "/weir-agent") {
			agent = &ds.Spec.Template.Spec.Containers[i]
		}
	}
	if agent == nil {
		t.Fatal("no weir-agent container")
	}
	var set []string
	for _, a := range append(slices.Clone(agent.Command[1:]), agent.Args...) {
		if name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "="); strings.HasPrefix(a, "-") && name == "fail-closed" {
			if on, err := strconv.ParseBool(value); !ok || err != nil || !on {
				t.Errorf("%q: want --fail-closed=true", a)
			}
			set = append(set, a)
		}
	}
	if len(set) != 1 {
		t.Errorf("agent flags set --fail-closed %d times (%v), want once as --fail-closed=true", len(set), set)
	}
}

// TestContainersRunWithLeastPrivilege pins every container's
// securityContext: no privilege escalation, a read-only root, the
// runtime's default seccomp filter, every capability dropped but the
// agent's NET_ADMIN, NET_RAW and NET_BIND_SERVICE (the DNS proxy's answers
// from port 53); and no host mount the agent does not use.
func TestContainersRunWithLeastPrivilege(t *testing.T) {
	ds := daemonSet(t)
	spec := ds.Spec.Template.Spec
	all := append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", c.Name)
			continue
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation must be false", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem must be true", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: must not be privileged", c.Name)
		}
		if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccompProfile must be RuntimeDefault", c.Name)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: capabilities must drop ALL", c.Name)
			continue
		}
		want := []corev1.Capability{}
		if c.Name == "agent" {
			want = []corev1.Capability{"NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"}
		}
		if got := append([]corev1.Capability{}, sc.Capabilities.Add...); !slices.Equal(got, want) {
			t.Errorf("%s: adds capabilities %v, want %v", c.Name, got, want)
		}
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path == "/lib/modules" {
			t.Errorf("volume %s mounts /lib/modules, which the agent never reads", v.Name)
		}
	}
	lock := false
	for _, m := range spec.Containers[0].VolumeMounts {
		lock = lock || m.MountPath == "/run/xtables.lock"
	}
	if !lock {
		t.Error("the agent must share the node's /run/xtables.lock, so iptables --wait serialises with kube-proxy")
	}
}

// TestInstallerNeedsNoShell: the image holds static binaries only.
func TestInstallerNeedsNoShell(t *testing.T) {
	for _, c := range daemonSet(t).Spec.Template.Spec.InitContainers {
		if len(c.Command) == 0 || strings.HasSuffix(c.Command[0], "sh") {
			t.Errorf("init container %s runs %q: the image has no shell", c.Name, c.Command)
		}
	}
}

// objects decodes every document of weir.yaml as the API type it claims
// to be, failing the test on any that does not decode.
func objects(t *testing.T) []runtime.Object {
	t.Helper()
	data, err := os.ReadFile("weir.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []runtime.Object
	for {
		var raw runtime.RawExtension
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatal(err)
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw.Raw, nil, nil)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		out = append(out, obj)
	}
}

// daemonSet is the first DaemonSet of weir.yaml.
func daemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	for _, obj := range objects(t) {
		if d, ok := obj.(*appsv1.DaemonSet); ok {
			return d
		}
	}
	t.Fatal("no DaemonSet in weir.yaml")
	return nil
}

// only returns the one object of type T in weir.yaml.
func only[T runtime.Object](t *testing.T) T {
	t.Helper()
	var found []T
	for _, obj := range objects(t) {
		if o, ok := obj.(T); ok {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("weir.yaml has %d objects of type %T, want 1", len(found), zero)
	}
	return found[0]
}

// TestRBACCoversClusterPolicies pins what the agent may do for
// ClusterNetworkPolicies: follow them, write their status, and hold the
// Lease that elects the writer, in its own namespace (which it learns from
// POD_NAMESPACE); nothing more on Leases.
func TestRBACCoversClusterPolicies(t *testing.T) {
	ds := daemonSet(t)
	cr := only[*rbacv1.ClusterRole](t)
	for res, verbs := range map[string][]string{
		"clusternetworkpolicies":        {"get", "list", "watch"},
		"clusternetworkpolicies/status": {"get", "update", "patch"},
	} {
		if !allows(cr.Rules, "policy.networking.k8s.io", res, "", verbs...) {
			t.Errorf("ClusterRole %s does not allow %v on %s", cr.Name, verbs, res)
		}
	}
	role, rb := only[*rbacv1.Role](t), only[*rbacv1.RoleBinding](t)
	if role.Namespace != ds.Namespace || rb.Namespace != ds.Namespace {
		t.Errorf("Role in %q and RoleBinding in %q, want the agent's namespace %q", role.Namespace, rb.Namespace, ds.Namespace)
	}
	if !allows(role.Rules, "coordination.k8s.io", "leases", "weir-cnp-status", "get", "create", "update") {
		t.Errorf("Role %s does not allow get, create and update on the Lease weir-cnp-status", role.Name)
	}
	if allows(role.Rules, "coordination.k8s.io", "leases", "another-lease", "update") {
		t.Errorf("Role %s may update any Lease", role.Name)
	}
	if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != role.Name || len(rb.Subjects) != 1 ||
		rb.Subjects[0].Kind != "ServiceAccount" || rb.Subjects[0].Name != ds.Spec.Template.Spec.ServiceAccountName ||
		rb.Subjects[0].Namespace != ds.Namespace {
		t.Errorf("RoleBinding %+v does not bind Role %s to the agent's service account", rb, role.Name)
	}
	var env *corev1.EnvVar
	for i, e := range ds.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "POD_NAMESPACE" {
			env = &ds.Spec.Template.Spec.Containers[0].Env[i]
		}
	}
	if env == nil || env.ValueFrom == nil || env.ValueFrom.FieldRef == nil || env.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("agent env POD_NAMESPACE = %+v, want the pod's metadata.namespace", env)
	}
}

// allows reports whether rules grant every verb on resource of group
// (name "" asks for the resource in general, which a rule limited to
// resourceNames does not grant).
func allows(rules []rbacv1.PolicyRule, group, resource, name string, verbs ...string) bool {
	for _, verb := range verbs {
		if !slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) &&
				(len(r.ResourceNames) == 0 || name != "" && slices.Contains(r.ResourceNames, name))
		}) {
			return false
		}
	}
	return true
}
