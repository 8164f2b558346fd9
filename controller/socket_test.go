package controller

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-cni/weir/agentapi"
)

// TestSocketAnswersFromTheAppliedRuleset drives status, rules and explain
// through the real unix socket, against a deny-all-but-app=client policy.
func TestSocketAnswersFromTheAppliedRuleset(t *testing.T) {
	web := pod("ns1", "web", "n1", map[string]string{"app": "web"}, "10.0.0.10")
	client := pod("ns1", "client", "n2", map[string]string{"app": "client"}, "10.0.1.5")
	other := pod("ns1", "other", "n2", map[string]string{"app": "other"}, "10.0.1.6")
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "web-from-client"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}}}},
		}}
	src := &memSource{objs: Objects{Pods: []*corev1.Pod{web, client, other}, Policies: []*networkingv1.NetworkPolicy{np}}}
	app := &recApplier{}
	a, _ := startAgent(t, src, app)
	waitFor(t, "first sync", func() bool { _, n := app.last(); return n >= 1 })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	go func() { _ = a.ServeSocket(ctx, sock) }()
	call := func(req agentapi.Request) (agentapi.Response, error) {
		var resp agentapi.Response
		var err error
		for i := 0; i < 100; i++ {
			cctx, c := context.WithTimeout(ctx, time.Second)
			resp, err = agentapi.Call(cctx, sock, req)
			c()
			if err == nil || !strings.Contains(err.Error(), "not running") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return resp, err
	}

	resp, err := call(agentapi.Request{Op: agentapi.OpStatus})
	var st Status
	if err != nil || json.Unmarshal(resp.Result, &st) != nil || !st.Synced {
		t.Fatalf("status: %v %s", err, resp.Result)
	}
	resp, err = call(agentapi.Request{Op: agentapi.OpRules})
	var rules string
	if err != nil || json.Unmarshal(resp.Result, &rules) != nil || !strings.Contains(rules, "ns1/web-from-client ingress rule 0") {
		t.Errorf("rules lack the policy's rule: %v\n%s", err, rules)
	}
	cases := []struct {
		src, dst string
		allowed  bool
		why      string
	}{
		{"ns1/client", "ns1/web", true, "ns1/web-from-client ingress rule 0"},
		{"ns1/other", "ns1/web", false, "drop"},
		{"10.9.9.9", "10.0.0.10", false, "drop"},
		{"ns1/web", "ns1/other", true, ""},
	}
	for _, tc := range cases {
		resp, err := call(agentapi.Request{Op: agentapi.OpExplain, Src: tc.src, Dst: tc.dst, Protocol: "TCP", Port: 80})
		var e Explanation
		if err != nil || json.Unmarshal(resp.Result, &e) != nil {
			t.Fatalf("explain %s -> %s: %v", tc.src, tc.dst, err)
		}
		if e.Allowed != tc.allowed || !strings.Contains(strings.Join(e.Steps, "\n"), tc.why) {
			t.Errorf("explain %s -> %s = %+v, want allowed=%v citing %q", tc.src, tc.dst, e, tc.allowed, tc.why)
		}
	}
	if _, err := call(agentapi.Request{Op: agentapi.OpExplain, Src: "ns1/ghost", Dst: "ns1/web", Port: 80}); err == nil {
		t.Error("explain of an unknown pod succeeded")
	}
	if _, err := call(agentapi.Request{Op: agentapi.OpExplain, Src: "ns1/client", Dst: "ns1/web", Protocol: "ICMP", Port: 80}); err == nil {
		t.Error("explain with an unknown protocol succeeded")
	}
}
