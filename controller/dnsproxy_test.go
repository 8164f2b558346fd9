package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/dataplane"
	"github.com/weir-cni/weir/dnsproxy"
	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/ruleset"
)

// events is the order of what the agent asked of its applier and DNS
// proxy.
type events struct {
	mu sync.Mutex
	ev []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ev = append(e.ev, s)
}

// take waits for n events and returns the first n, forgetting all.
func (e *events) take(t *testing.T, n int) []string {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d events", n), func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.ev) >= n
	})
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.ev[:n]
	e.ev = nil
	return out
}

// fakeDNSProxy records its calls in events; Explain says it learned what
// learned holds for the pair pod . addr.
type fakeDNSProxy struct {
	events    *events
	pod, addr netip.Addr
	learned   []dnsproxy.Learned
}

func (f *fakeDNSProxy) Hold(context.Context) error { f.events.add("hold"); return nil }
func (f *fakeDNSProxy) Release()                   { f.events.add("release") }

func (f *fakeDNSProxy) SetRules(rules []ruleset.DNSRule) error {
	var pods []string
	for _, r := range rules {
		pods = append(pods, fmt.Sprint(r.Pods))
	}
	f.events.add("rules " + strings.Join(pods, " "))
	return nil
}

func (f *fakeDNSProxy) Explain(pod, addr netip.Addr) []dnsproxy.Learned {
	if pod == f.pod && addr == f.addr {
		return f.learned
	}
	return nil
}

// eventApplier is a recApplier that records its Applies in events.
type eventApplier struct {
	*recApplier
	events *events
}

func (e eventApplier) Apply(ctx context.Context, rs ruleset.Ruleset) ([]dataplane.Problem, error) {
	e.events.add("apply")
	return e.recApplier.Apply(ctx, rs)
}

// webOut lets the pods app=web of namespace shop reach api.example.com on
// TCP 443, and nothing else outside.
func webOut(t *testing.T) *cnpv1beta1.ClusterNetworkPolicy {
	t.Helper()
	var p cnpv1beta1.ClusterNetworkPolicy
	err := yaml.Unmarshal([]byte(`
metadata: {name: web-out}
spec:
  tier: Admin
  priority: 10
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  egress:
  - {name: api, action: Accept, to: [{domainNames: [api.example.com]}], protocols: [{tcp: {destinationPort: {number: 443}}}]}
  - {name: nothing else, action: Deny, to: [{networks: [0.0.0.0/0]}]}`), &p)
	if err != nil {
		t.Fatal(err)
	}
	return &p
}

// dnsWorld is one local pod, shop/web (10.244.1.5), subject of webOut.
func dnsWorld(t *testing.T) snapshot.Objects {
	return snapshot.Objects{Nodes: []*corev1.Node{localNode()},
		Namespaces:      []*corev1.Namespace{fixtures.Namespace("shop", map[string]string{"kubernetes.io/metadata.name": "shop"})},
		Pods:            snapshot.NewPods(pod("shop", "web", "n1", map[string]string{"app": "web"}, "10.244.1.5")),
		ClusterPolicies: []*cnpv1beta1.ClusterNetworkPolicy{webOut(t)}}
}

func startDNSAgent(t *testing.T, src snapshot.Source, app dataplane.Applier, proxy DNSProxy) *Agent {
	t.Helper()
	a := &Agent{Node: "n1", Source: src, Applier: app, DNSProxy: proxy, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	runAgent(t, a)
	return a
}

// TestDNSProxyHeldWhileItsRulesChange: a sync whose domainNames rules
// differ from those the proxy has holds its answers from before the apply
// until after it has the new rules; a sync that keeps them holds nothing;
// a failed apply releases the answers, the proxy's rules unchanged.
func TestDNSProxyHeldWhileItsRulesChange(t *testing.T) {
	ev := &events{}
	src := &memSource{objs: dnsWorld(t)}
	app := &recApplier{}
	a := startDNSAgent(t, src, eventApplier{app, ev}, &fakeDNSProxy{events: ev})
	if got, want := ev.take(t, 4), []string{"hold", "apply", "rules [10.244.1.5]", "release"}; !slices.Equal(got, want) {
		t.Errorf("first sync: %q, want %q", got, want)
	}
	a.Kick()
	if got, want := ev.take(t, 2), []string{"apply", "rules [10.244.1.5]"}; !slices.Equal(got, want) {
		t.Errorf("sync with the same rules: %q, want %q", got, want)
	}
	src.mu.Lock()
	src.objs.Pods = append(slices.Clone(src.objs.Pods), snapshot.NewPod(pod("shop", "web2", "n1", map[string]string{"app": "web"}, "10.244.1.6")))
	src.mu.Unlock()
	a.Kick()
	if got, want := ev.take(t, 4), []string{"hold", "apply", "rules [10.244.1.5 10.244.1.6]", "release"}; !slices.Equal(got, want) {
		t.Errorf("sync with a new pod in the rule: %q, want %q", got, want)
	}
	app.mu.Lock()
	app.fail = fmt.Errorf("netlink: boom")
	app.mu.Unlock()
	src.mu.Lock()
	src.objs.Pods = src.objs.Pods[:1]
	src.mu.Unlock()
	a.Kick()
	if got, want := ev.take(t, 3), []string{"hold", "apply", "release"}; !slices.Equal(got, want) {
		t.Errorf("failed apply: %q, want %q", got, want)
	}
}

// TestExplainLearned: explain counts what the DNS proxy says the source
// learned of the destination: the learned-address set's lookup accepts,
// and the answer lists the lookup that let the address in; an address not
// learned, or a port the rule does not allow, is denied.
func TestExplainLearned(t *testing.T) {
	ev := &events{}
	proxy := &fakeDNSProxy{events: ev, pod: netip.MustParseAddr("10.244.1.5"), addr: netip.MustParseAddr("192.0.2.1")}
	app := &recApplier{}
	a := startDNSAgent(t, &memSource{objs: dnsWorld(t)}, app, proxy)
	waitFor(t, "first sync", func() bool { _, n := app.last(); return n >= 1 })
	rs, _ := app.last()
	if len(rs.DNS) != 1 {
		t.Fatalf("DNS rules %+v, want web-out's", rs.DNS)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	proxy.learned = []dnsproxy.Learned{{Owner: rs.DNS[0].Owner, Set: rs.DNS[0].Set4, Name: "api.example.com", Answer: "edge.example.net",
		Addr: proxy.addr, At: at, Expires: at.Add(30 * time.Second)}}
	rule0 := 0
	want := []agentapi.ExplainLearned{{Set: rs.DNS[0].Set4, Name: "api.example.com", Answer: "edge.example.net", Learned: at, Expires: at.Add(30 * time.Second),
		Owner: &agentapi.ExplainOwner{Kind: "policy-rule", Tier: "Admin", Policy: "web-out", Direction: "egress", Rule: &rule0,
			RuleName: "api", Action: "Accept", Text: "Admin cnp/web-out egress rule 0 'api': Accept"}}}

	e, err := a.explain(agentapi.Request{Src: "shop/web", Dst: "192.0.2.1", Protocol: "TCP", Port: 443})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(e.Steps, func(s agentapi.ExplainStep) bool { return strings.Contains(s.Text, "@"+rs.DNS[0].Set4) })
	if !e.Allowed || i < 0 || e.Steps[i].Owner == nil || e.Steps[i].Owner.RuleName != "api" || e.Steps[i].Verdict != "accept" {
		t.Errorf("learned address: allowed %v, steps %+v; want accepted by the lookup of %s", e.Allowed, e.Steps, rs.DNS[0].Set4)
	}
	if !reflect.DeepEqual(e.Learned, want) {
		t.Errorf("learned %+v, want %+v", e.Learned, want)
	}
	for _, tc := range []struct {
		dst     string
		port    int
		learned bool
	}{{"192.0.2.9", 443, false}, {"192.0.2.1", 80, true}} {
		e, err := a.explain(agentapi.Request{Src: "shop/web", Dst: tc.dst, Protocol: "TCP", Port: tc.port})
		if err != nil {
			t.Fatal(err)
		}
		if last := e.Steps[len(e.Steps)-1]; e.Allowed || last.Owner == nil || last.Owner.RuleName != "nothing else" || (e.Learned != nil) != tc.learned {
			t.Errorf("%s port %d: allowed %v, decided by %+v, learned %+v; want the Deny rule", tc.dst, tc.port, e.Allowed, last, e.Learned)
		}
	}
}
