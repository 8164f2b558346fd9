package source

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weir-cni/weir/controller/kube/kubetest"
	"github.com/weir-cni/weir/controller/snapshot"
	"github.com/weir-cni/weir/internal/fixtures"
	"github.com/weir-cni/weir/policy"
)

// pod and node build the objects of these tests (fixtures.Pod,
// fixtures.Node).
var pod, node = fixtures.Pod, fixtures.Node

var managed = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}

func fullPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns1", Name: "web", UID: "u1", ResourceVersion: "7",
			Labels:          map[string]string{"app": "web"},
			Annotations:     map[string]string{lastApplied: "{...}", "note": "x"},
			ManagedFields:   managed,
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-1"}},
		},
		Spec: corev1.PodSpec{
			NodeName: "n1",
			Volumes:  []corev1.Volume{{Name: "data"}},
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox",
				Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9090}}}},
			Containers: []corev1.Container{{
				Name: "main", Image: "nginx", Env: []corev1.EnvVar{{Name: "A", Value: "b"}},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
			}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.0.0.5", PodIPs: []corev1.PodIP{{IP: "10.0.0.5"}},
			HostIP:            "192.168.0.1",
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "main", Ready: true}},
		},
	}
}

// fullCNP is a ClusterNetworkPolicy with one rule and the Accepted
// condition, as its cache holds it.
func fullCNP() *cnpv1beta1.ClusterNetworkPolicy {
	p := fixtures.ClusterPolicy("admin", cnpv1beta1.AdminTier, 3)
	p.UID, p.ResourceVersion, p.Generation = "c1", "1", 4
	p.Spec.Ingress = []cnpv1beta1.ClusterNetworkPolicyIngressRule{{Name: "deny-all",
		Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
		From:   []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}}}
	p.Status.Conditions = []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", ObservedGeneration: 4}}
	return p
}

func TestStripForCache(t *testing.T) {
	tombstone := cache.DeletedFinalStateUnknown{Key: "ns1/web", Obj: fullPod()}
	tests := []struct {
		name string
		in   any
		want any
	}{
		{
			name: "pod keeps labels, node, named container ports (TCP when unset), podIPs and phase; loses managedFields, annotations, owners, volumes, images, conditions, hostIP",
			in:   fullPod(),
			want: &snapshot.Pod{
				Namespace: "ns1", Name: "web", UID: "u1", ResourceVersion: "7",
				Labels:   map[string]string{"app": "web"},
				NodeName: "n1",
				Phase:    corev1.PodRunning,
				IPs:      []netip.Addr{netip.MustParseAddr("10.0.0.5")},
				Ports: []policy.ContainerPort{{Name: "metrics", Protocol: "TCP", Port: 9090},
					{Name: "http", Protocol: "TCP", Port: 80}},
			},
		},
		{
			name: "pod without named ports keeps none; podIP counts when podIPs is empty, unmapped; hostNetwork stays",
			in: &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "db"},
				Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "a", Ports: []corev1.ContainerPort{{ContainerPort: 5432}}},
					{Name: "b"}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "::ffff:10.0.0.6"},
			},
			want: &snapshot.Pod{Namespace: "ns1", Name: "db", HostNetwork: true,
				Phase: corev1.PodRunning, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.6")}},
		},
		{
			name: "pod addresses that do not parse are left out",
			in: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "odd"},
				Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "x"}, {IP: "fd00::1"}}}},
			want: &snapshot.Pod{Namespace: "ns1", Name: "odd",
				IPs: []netip.Addr{netip.MustParseAddr("fd00::1")}},
		},
		{
			name: "node keeps pod CIDRs and addresses; loses heartbeats and images",
			in: &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"},
					Annotations: map[string]string{"volumes": "x"}, ManagedFields: managed},
				Spec: corev1.NodeSpec{PodCIDR: "10.0.1.0/24", PodCIDRs: []string{"10.0.1.0/24"}, ProviderID: "p"},
				Status: corev1.NodeStatus{
					Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.2"}},
					Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady}},
					Images:     []corev1.ContainerImage{{Names: []string{"nginx"}}},
				},
			},
			want: &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"}},
				Spec:       corev1.NodeSpec{PodCIDR: "10.0.1.0/24", PodCIDRs: []string{"10.0.1.0/24"}},
				Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.2"}}},
			},
		},
		{
			name: "namespace keeps labels and other annotations; loses last-applied and finalizers",
			in: &corev1.Namespace{
				ObjectMeta: metav1.ObjectMeta{Name: "ns1", Labels: map[string]string{"team": "a"},
					Annotations: map[string]string{lastApplied: "{...}", "owner": "me"}, ManagedFields: managed},
				Spec:   corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
				Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
			},
			want: &corev1.Namespace{
				ObjectMeta: metav1.ObjectMeta{Name: "ns1", Labels: map[string]string{"team": "a"},
					Annotations: map[string]string{"owner": "me"}},
				Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
			},
		},
		{
			name: "policy keeps its spec; loses managedFields and last-applied",
			in: &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "deny",
					Annotations: map[string]string{lastApplied: "{...}"}, ManagedFields: managed},
				Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
			},
			want: &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "deny"},
				Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
			},
		},
		{
			name: "cluster policy keeps spec, status and generation; loses managedFields and last-applied",
			in: func() *cnpv1beta1.ClusterNetworkPolicy {
				p := fullCNP()
				p.Annotations = map[string]string{lastApplied: "{...}", "note": "x"}
				p.ManagedFields, p.Labels = managed, map[string]string{"team": "sec"}
				return p
			}(),
			want: func() *cnpv1beta1.ClusterNetworkPolicy {
				p := fullCNP()
				p.Annotations, p.Labels = map[string]string{"note": "x"}, map[string]string{"team": "sec"}
				return p
			}(),
		},
		{name: "tombstone passes unchanged", in: tombstone, want: tombstone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := StripForCache(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("StripForCache:\n got %#v\nwant %#v", got, tt.want)
			}
			again, _ := StripForCache(got)
			if !reflect.DeepEqual(again, got) {
				t.Errorf("StripForCache is not idempotent:\n once  %#v\n twice %#v", got, again)
			}
		})
	}
}

func TestStripForCacheLeavesInputIntact(t *testing.T) {
	in := fullPod()
	if _, err := StripForCache(in); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, fullPod()) {
		t.Errorf("StripForCache modified its input")
	}
}

func TestRelevant(t *testing.T) {
	pod := func(edit func(*corev1.Pod)) *snapshot.Pod {
		p := fullPod()
		p.ResourceVersion = "8"
		edit(p)
		return snapshot.NewPod(p)
	}
	base, _ := StripForCache(fullPod())
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "1"},
		Spec:       corev1.NodeSpec{PodCIDRs: []string{"10.0.1.0/24"}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.2"}}},
	}
	nodeWith := func(edit func(*corev1.Node)) *corev1.Node {
		n := node.DeepCopy()
		n.ResourceVersion = "2"
		edit(n)
		return n
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns1", ResourceVersion: "1", Labels: map[string]string{"a": "1"}}}
	nsWith := func(edit func(*corev1.Namespace)) *corev1.Namespace {
		n := ns.DeepCopy()
		n.ResourceVersion = "2"
		edit(n)
		return n
	}
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "p", ResourceVersion: "1"}}
	npWith := func(edit func(*networkingv1.NetworkPolicy)) *networkingv1.NetworkPolicy {
		n := np.DeepCopy()
		n.ResourceVersion = "2"
		edit(n)
		return n
	}
	cnpWith := func(edit func(*cnpv1beta1.ClusterNetworkPolicy)) *cnpv1beta1.ClusterNetworkPolicy {
		p := fullCNP()
		p.ResourceVersion = "2"
		edit(p)
		return p
	}
	now := metav1.Now()
	tests := []struct {
		name     string
		old, new any
		want     bool
	}{
		{"cluster policy: spec change", fullCNP(), cnpWith(func(p *cnpv1beta1.ClusterNetworkPolicy) { p.Spec.Priority = 7 }), true},
		{"cluster policy: status-only change (a status write) ignored", fullCNP(), cnpWith(func(p *cnpv1beta1.ClusterNetworkPolicy) {
			p.Status.Conditions = nil
		}), false},
		{"cluster policy: label-only change ignored", fullCNP(), cnpWith(func(p *cnpv1beta1.ClusterNetworkPolicy) {
			p.Labels = map[string]string{"x": "y"}
		}), false},
		{"cluster policy: deletion started", fullCNP(), cnpWith(func(p *cnpv1beta1.ClusterNetworkPolicy) { p.DeletionTimestamp = &now }), true},
		{"resync with the same resourceVersion is ignored", base, base, false},
		{"pod: new resourceVersion, nothing used changed", base, pod(func(*corev1.Pod) {}), false},
		{"pod: label change", base, pod(func(p *corev1.Pod) { p.Labels = map[string]string{"app": "db"} }), true},
		{"pod: label removed", base, pod(func(p *corev1.Pod) { p.Labels = nil }), true},
		{"pod: IP assigned", base, pod(func(p *corev1.Pod) { p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: "fd00::5"}) }), true},
		{"pod: phase to Succeeded", base, pod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), true},
		{"pod: deletion started", base, pod(func(p *corev1.Pod) { p.DeletionTimestamp = &now }), true},
		{"pod: named port changed", base, pod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 8080 }), true},
		{"pod: named port removed", base, pod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports = p.Spec.Containers[0].Ports[1:] }), true},
		{"pod: annotation-only change (stripped) is ignored", base, pod(func(p *corev1.Pod) { p.Annotations = map[string]string{"x": "y"} }), false},
		{"pod: replaced by a new pod of that name", base, pod(func(p *corev1.Pod) { p.UID = "u2" }), true},
		{"node: heartbeat (status conditions) ignored", node, nodeWith(func(n *corev1.Node) {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, LastHeartbeatTime: now}}
		}), false},
		{"node: pod CIDR assigned", node, nodeWith(func(n *corev1.Node) { n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, "fd00:1::/64") }), true},
		{"node: InternalIP changed", node, nodeWith(func(n *corev1.Node) { n.Status.Addresses[0].Address = "192.168.0.9" }), true},
		{"namespace: label change", ns, nsWith(func(n *corev1.Namespace) { n.Labels = map[string]string{"a": "2"} }), true},
		{"namespace: annotation change ignored", ns, nsWith(func(n *corev1.Namespace) { n.Annotations = map[string]string{"x": "y"} }), false},
		{"policy: spec change", np, npWith(func(p *networkingv1.NetworkPolicy) {
			p.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		}), true},
		{"policy: label-only change ignored", np, npWith(func(p *networkingv1.NetworkPolicy) { p.Labels = map[string]string{"x": "y"} }), false},
		{"unknown kind counts as relevant", "a", "b", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := relevant(tt.old, tt.new); got != tt.want {
				t.Errorf("relevant = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUnwrapTombstone(t *testing.T) {
	p, cnp := snapshot.NewPod(fullPod()), fullCNP()
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"plain object", p, p.GetObjectMeta()},
		{"tombstone yields the last known object", cache.DeletedFinalStateUnknown{Key: "ns1/web", Obj: p}, p.GetObjectMeta()},
		{"tombstone of a cluster policy", cache.DeletedFinalStateUnknown{Key: "admin", Obj: cnp}, cnp},
		{"tombstone of an unknown kind yields nil", cache.DeletedFinalStateUnknown{Key: "x", Obj: "junk"}, nil},
		{"unknown kind yields nil", 42, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := unwrapTombstone(tt.in)
			if tt.want == nil {
				if got != nil {
					t.Errorf("unwrapTombstone = %v, want nil", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("unwrapTombstone = %v, want %v", got, tt.want)
			}
		})
	}
}

// watchStarted makes the fake clientset report each resource's first watch:
// the fake has no resourceVersions, so an event written between the
// informer's list and its watch would be lost, and tests wait for the watch.
func watchStarted(c *fake.Clientset) map[string]chan struct{} {
	return watchesStarted(&c.Fake, "pods", "namespaces", "networkpolicies", "nodes")
}

// watchesStarted is watchStarted for any fake clientset and resources.
func watchesStarted(c *k8stesting.Fake, resources ...string) map[string]chan struct{} {
	started := map[string]chan struct{}{}
	for _, r := range resources {
		started[r] = make(chan struct{})
	}
	c.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		if ch, ok := started[a.GetResource().Resource]; ok {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
		return false, nil, nil
	})
	return started
}

// waitWatches waits until every informer of started watches.
func waitWatches(t *testing.T, started map[string]chan struct{}) {
	t.Helper()
	for r, ch := range started {
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("informer for %s never watched", r)
		}
	}
}

func waitKick(t *testing.T, kicks <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-kicks:
	case <-time.After(30 * time.Second):
		t.Fatalf("no kick after %s", what)
	}
}

// startKicks runs src until the returned stop, which checks Run's error;
// kicks receives src's kicks.
func startKicks(t *testing.T, src *KubeSource) (kicks chan struct{}, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	kicks = make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func() { kicks <- struct{}{} }) }()
	return kicks, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestKubeSourceRun(t *testing.T) {
	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns1"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
		fullPod(),
	}
	client := fake.NewClientset(objs...)
	started := watchStarted(client)
	src := NewKubeSource(kubetest.Clientset(client), 0)
	if _, err := src.Objects(); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("Objects before sync: err = %v, want ErrNotSynced", err)
	}
	kicks, stop := startKicks(t, src)
	defer stop()
	ctx := context.Background()

	waitKick(t, kicks, "sync")
	if !src.Synced() {
		t.Fatal("kicked before Synced")
	}
	o, err := src.Objects()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Pods) != 1 || len(o.Namespaces) != 1 || len(o.Nodes) != 1 || len(o.Policies) != 0 {
		t.Fatalf("Objects after sync: %d pods, %d namespaces, %d nodes, %d policies; want 1, 1, 1, 0",
			len(o.Pods), len(o.Namespaces), len(o.Nodes), len(o.Policies))
	}
	if idx := src.pods.GetIndexer().GetIndexers(); len(idx) != 0 {
		t.Errorf("pod cache keeps %d indexes; it is read by key only", len(idx))
	}
	waitWatches(t, started)

	pods := client.CoreV1().Pods("ns1")
	// A status-only change (a readiness flip) must not kick; the label
	// change after it must. Events of one informer arrive in order, so the
	// next kick belongs to the label change only if the first was ignored.
	// The fake keeps the resourceVersions it is given; a real API server
	// bumps them on every write.
	p := fullPod()
	p.Status.Conditions[0].Status = corev1.ConditionFalse
	p.ResourceVersion = "8"
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p.Labels = map[string]string{"app": "db"}
	p.ResourceVersion = "9"
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitKick(t, kicks, "label change")
	if len(kicks) != 0 {
		t.Errorf("status-only update kicked (%d extra kicks)", len(kicks))
	}
	o, _ = src.Objects()
	if got := o.Pods[0].Labels["app"]; got != "db" {
		t.Errorf("at the first kick the cached label app = %q, want db: the status-only update kicked", got)
	}

	if err := pods.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitKick(t, kicks, "pod delete")
	if o, _ = src.Objects(); len(o.Pods) != 0 {
		t.Errorf("pods after delete: %d, want 0", len(o.Pods))
	}
}

func TestKubeSourceGetPod(t *testing.T) {
	client := fake.NewClientset(fullPod())
	src := NewKubeSource(kubetest.Clientset(client), 0) // never run: the cache is empty
	tests := []struct {
		name     string
		pod, uid string
		wantErr  bool
	}{
		{"missing from the cache is read from the API server", "web", "", false},
		{"matching uid is accepted", "web", "u1", false},
		{"another pod of that name is not found", "web", "u-other", true},
		{"unknown pod is not found", "nope", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := src.GetPodUID(context.Background(), "ns1", tt.pod, types.UID(tt.uid))
			if tt.wantErr {
				if !apierrors.IsNotFound(err) {
					t.Fatalf("GetPod err = %v, want not found", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Labels["app"] != "web" || p.UID != "u1" {
				t.Errorf("GetPod = %+v, want the stripped pod", p)
			}
		})
	}
}

func TestKubeSourceReportsListErrorsAndRetries(t *testing.T) {
	client := fake.NewClientset(fullPod())
	var failed atomic.Bool
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failed.CompareAndSwap(false, true) {
			return true, nil, errors.New("api server down")
		}
		return false, nil, nil
	})
	src := NewKubeSource(kubetest.Clientset(client), 0)
	reported := make(chan string, 10)
	src.OnWatchError = func(resource string, err error) { reported <- resource + ": " + err.Error() }
	ctx, cancel := context.WithCancel(context.Background())
	kicks := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func() { kicks <- struct{}{} }) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case r := <-reported:
		if !strings.HasPrefix(r, "pods: ") || !strings.HasSuffix(r, "api server down") {
			t.Errorf("OnWatchError got %q", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("OnWatchError not called for the failed list")
	}
	waitKick(t, kicks, "sync after the failed list")
	if o, err := src.Objects(); err != nil || len(o.Pods) != 1 {
		t.Errorf("Objects after retry: %d pods, %v; want 1", len(o.Pods), err)
	}
}

// TestStripForCacheSharesLabelSets: pods with equal labels get one map;
// others keep their own.
func TestStripForCacheSharesLabelSets(t *testing.T) {
	strip := func(labels map[string]string) map[string]string {
		p := fullPod()
		p.Labels = labels
		out, _ := StripForCache(p)
		return out.(*snapshot.Pod).Labels
	}
	a := strip(map[string]string{"app": "shared-test", "pod-template-hash": "1"})
	b := strip(map[string]string{"pod-template-hash": "1", "app": "shared-test"})
	c := strip(map[string]string{"app": "shared-test", "pod-template-hash": "2"})
	if reflect.ValueOf(a).UnsafePointer() != reflect.ValueOf(b).UnsafePointer() {
		t.Error("equal label sets are two maps")
	}
	if reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(c).UnsafePointer() || c["pod-template-hash"] != "2" {
		t.Errorf("different label sets share a map: %v", c)
	}
}
