package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestAgentLinksNoClientset: weir-agent reaches the API server through
// package controller/kube, whose scheme holds only the API groups it uses.
// client-go's Clientset, informer factory, listers, discovery and leader
// election (and the network-policy-api clientset, which brings discovery)
// import k8s.io/client-go/kubernetes/scheme, which registers every
// built-in API group at start: ≈16 MB more binary and ≈10 MiB more RSS.
func TestAgentLinksNoClientset(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	banned := []string{"k8s.io/client-go/kubernetes", "k8s.io/client-go/informers", "k8s.io/client-go/listers",
		"k8s.io/client-go/discovery", "k8s.io/client-go/tools/leaderelection", "sigs.k8s.io/network-policy-api/pkg/client"}
	groups := []string{"k8s.io/api/authentication/v1", "k8s.io/api/authorization/v1", "k8s.io/api/coordination/v1",
		"k8s.io/api/core/v1", "k8s.io/api/networking/v1"}
	for _, pkg := range strings.Fields(string(out)) {
		if slices.ContainsFunc(banned, func(b string) bool { return pkg == b || strings.HasPrefix(pkg, b+"/") }) {
			t.Errorf("weir-agent imports %s", pkg)
		}
		if strings.HasPrefix(pkg, "k8s.io/api/") && !slices.Contains(groups, pkg) {
			t.Errorf("weir-agent imports API group %s; it uses only %v", pkg, groups)
		}
	}
}
