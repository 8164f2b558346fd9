//go:build integration

package controller

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kubeclient "github.com/weir-cni/weir/controller/kube"
	"github.com/weir-cni/weir/integration/kube"
)

// TestKubeAuthGuardsMetrics serves the agent's handler with --metrics-auth
// kube against a real API server: the agent, holding only
// system:auth-delegator, reviews each scraper's service-account token and
// its right to get /metrics; health probes stay open; a revoked binding
// stops access once the cached answer is older than the TTL.
func TestKubeAuthGuardsMetrics(t *testing.T) {
	ctx := context.Background()
	c := kube.StartT(t, kube.Options{})
	cs := c.Client
	if _, err := kube.CreateNamespace(ctx, cs, "mon", nil); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"scraper", "stranger"} {
		if _, err := cs.CoreV1().ServiceAccounts("mon").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader"},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{})
	mustCreate(err)
	bind := func(name, role string, subject rbacv1.Subject) {
		_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{subject},
		}, metav1.CreateOptions{})
		mustCreate(err)
	}
	bind("scraper-metrics", "metrics-reader", rbacv1.Subject{Kind: "ServiceAccount", Name: "scraper", Namespace: "mon"})
	bind("weir-auth-delegator", "system:auth-delegator", rbacv1.Subject{Kind: "User", Name: "weir-agent-test", APIGroup: "rbac.authorization.k8s.io"})

	token := func(sa string) string {
		tr, err := cs.CoreV1().ServiceAccounts("mon").CreateToken(ctx, sa, &authnv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	agentKC, err := c.UserKubeconfig("agent", "weir-agent-test")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.RestConfigFor(agentKC)
	if err != nil {
		t.Fatal(err)
	}
	agentClient, err := kubeclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Now()
	auth := &KubeAuth{Tokens: agentClient.TokenReviews(), Access: agentClient.SubjectAccessReviews(), now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	a := &Agent{Metrics: NewMetrics(), MetricsAuth: auth, Pprof: true}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	get := func(path, tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	scraper := token("scraper")
	for _, tc := range []struct {
		what, path, token string
		want              int
	}{
		{"no token", "/metrics", "", http.StatusUnauthorized},
		{"a token no one issued", "/metrics", "not-a-token", http.StatusUnauthorized},
		{"an account without the role", "/metrics", token("stranger"), http.StatusForbidden},
		{"the scraper", "/metrics", scraper, http.StatusOK},
		{"health without a token", "/healthz", "", http.StatusOK},
		{"profiles without a token", "/debug/pprof/heap", "", http.StatusUnauthorized},
		{"the scraper on profiles, which its role lacks", "/debug/pprof/heap", scraper, http.StatusForbidden},
	} {
		code, body := get(tc.path, tc.token)
		if code != tc.want {
			t.Errorf("%s: GET %s = %d %q, want %d", tc.what, tc.path, code, firstLine(body), tc.want)
		}
		if tc.want == http.StatusOK && tc.path == "/metrics" && !strings.Contains(body, "weir_sync_errors_total") {
			t.Errorf("%s: /metrics body lacks weir's metrics", tc.what)
		}
	}

	if err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, "scraper-metrics", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("/metrics", scraper); code != http.StatusOK {
		t.Errorf("within the TTL the cached answer holds: got %d", code)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _ := get("/metrics", scraper)
		if code == http.StatusForbidden {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the TTL a revoked scraper still gets %d", code)
		}
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		now = now.Add(2 * time.Minute) // the RBAC authorizer's cache may lag a moment
		mu.Unlock()
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
