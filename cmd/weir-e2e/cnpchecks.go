package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weir-cni/weir/integration/cluster"
)

// Namespaces of the ClusterNetworkPolicy checks: the client whose egress
// the policies select, and the servers it probes.
const (
	nsCNPClient = "weir-cnp-client"
	nsCNPServer = "weir-cnp-server"
)

// Ports of the checks' servers: each pod serves TCP and UDP on a pair
// inside the port range check's ranges and on a pair outside them; the
// hostNetwork servers on one pair of host ports.
const (
	cnpTCPIn, cnpUDPIn   = 8080, 8081
	cnpTCPOut, cnpUDPOut = 9090, 9091
	cnpHostTCP           = 34600
	cnpHostUDP           = 34601
)

// cnpResource is the ClusterNetworkPolicy API, used through the dynamic
// client with the module's own types.
var cnpResource = cnpv1beta1.SchemeGroupVersion.WithResource("clusternetworkpolicies")

// cnpChecker holds the addresses of the checks' servers: a pod on the
// client's node (near) and one on another node (far), and a hostNetwork
// pod on each of those nodes.
type cnpChecker struct {
	*checker
	dyn                          dynamic.Interface
	near, far, hostNear, hostFar string
}

// cnpChecks runs weir's own ClusterNetworkPolicy checks over TCP and UDP:
// what the conformance suite tests only together with SCTP, which this
// kernel may lack (networks, port ranges, node peers denied).
func cnpChecks(ctx context.Context, c *cluster.Cluster, o options, runDir string, logf func(string, ...any)) cluster.Result {
	k := &cnpChecker{checker: &checker{c: c, o: o, logf: logf}}
	return runChecks(ctx, "weir-cnp", runDir, logf, k.setup, k.cleanup, []check{
		{"ClusterNetworkPolicy Admin Deny to a networks CIDR; an Accept of a narrower CIDR wins by its lower priority number only", k.adminNetworks},
		{"ClusterNetworkPolicy Admin Deny of TCP and UDP port ranges, both ends included", k.adminPortRange},
		{"ClusterNetworkPolicy Baseline Deny to nodes, by label and all of them (TCP and UDP to hostNetwork pods)", k.baselineNodes},
	})
}

func (k *cnpChecker) setup(ctx context.Context) error {
	if err := k.begin(ctx, nsCNPClient, nsCNPServer); err != nil {
		return err
	}
	near, far := k.c.Nodes[0].Name, k.c.Nodes[len(k.c.Nodes)-1].Name
	pods := []*corev1.Pod{
		idlePod(nsCNPClient, "client", nil, near),
		cnpServerPod("near", near), cnpServerPod("far", far),
		cnpHostPod("host-near", near), cnpHostPod("host-far", far),
	}
	return k.startPods(ctx, pods, map[string]*string{"near": &k.near, "far": &k.far, "host-near": &k.hostNear, "host-far": &k.hostFar})
}

// begin makes the dynamic client of the ClusterNetworkPolicy API and
// creates the checks' namespaces.
func (k *cnpChecker) begin(ctx context.Context, namespaces ...string) error {
	dyn, err := dynamic.NewForConfig(k.c.RestConfig)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	k.dyn = dyn
	for _, ns := range namespaces {
		if _, err := k.c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// startPods creates pods and waits for them to run and be ready; ips
// gets the addresses of those it names.
func (k *checker) startPods(ctx context.Context, pods []*corev1.Pod, ips map[string]*string) error {
	for _, p := range pods {
		if _, err := k.c.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	for _, p := range pods {
		ip, err := k.waitRunning(ctx, p.Namespace, p.Name, 2*time.Minute)
		if err != nil {
			return err
		}
		if dst := ips[p.Name]; dst != nil {
			*dst = ip
		}
	}
	return nil
}

func (k *cnpChecker) cleanup(ctx context.Context) error {
	for _, ns := range []string{nsCNPClient, nsCNPServer} {
		_ = k.c.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	}
	return nil
}

// cnpServerPod serves TCP and UDP on both port pairs, ready once both TCP
// ports accept.
func cnpServerPod(name, node string) *corev1.Pod {
	p := serverPod(nsCNPServer, name, map[string]string{"app": "cnp-server"}, node)
	out := p.Spec.Containers[0]
	out.Name = "out"
	out.Args = []string{"netexec", fmt.Sprintf("--http-port=%d", cnpTCPOut), fmt.Sprintf("--udp-port=%d", cnpUDPOut)}
	out.Ports = nil
	probe := &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(cnpTCPOut)}},
		PeriodSeconds: 2,
	}
	out.ReadinessProbe, out.LivenessProbe = probe, probe
	p.Spec.Containers = append(p.Spec.Containers, out)
	return p
}

// cnpHostPod is a hostNetwork server on node. Its UDP socket is bound to
// the node's address, so an answer leaves from the address the client
// asked (as the conformance suite's hostNetwork pods do).
func cnpHostPod(name, node string) *corev1.Pod {
	probe := &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(cnpHostTCP)}},
		PeriodSeconds: 2,
	}
	p := agnhostPod(nsCNPServer, name, map[string]string{"app": "cnp-host"}, node, corev1.Container{Name: "srv",
		Args: []string{"netexec", fmt.Sprintf("--http-port=%d", cnpHostTCP), fmt.Sprintf("--udp-port=%d", cnpHostUDP),
			"--udp-listen-addresses=$(HOST_IP)"},
		Env: []corev1.EnvVar{{Name: "HOST_IP", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}}},
		ReadinessProbe: probe,
	})
	p.Spec.HostNetwork = true
	return p
}

// probe is one connection attempt from the client pod.
type probe struct {
	proto, host string
	port        int
}

func (p probe) String() string {
	return fmt.Sprintf("%s %s", p.proto, net.JoinHostPort(p.host, fmt.Sprint(p.port)))
}

// tcpUDP is a TCP and a UDP probe of host.
func tcpUDP(host string, tcp, udp int) []probe {
	return []probe{{"tcp", host, tcp}, {"udp", host, udp}}
}

// Outcomes of a probe: connected, or dropped silently (the API's Deny:
// the conformance suite accepts a timeout only, not a refusal).
const (
	connected = "OK"
	dropped   = "TIMEOUT"
)

// reach runs agnhost connect from the client pod: OK, or what agnhost
// printed (TIMEOUT, REFUSED, OTHER: ...).
func (k *cnpChecker) reach(ctx context.Context, p probe) string {
	out, err := k.exec(ctx, nsCNPClient, "client", "/agnhost", "connect", "--protocol="+p.proto, "--timeout=3s",
		net.JoinHostPort(p.host, fmt.Sprint(p.port)))
	return outcome(out, err)
}

// expect waits (20 s at most, as long as policy takes to reach the
// kernel) until every probe gives want, then checks them once more.
func (k *cnpChecker) expect(ctx context.Context, want string, probes ...probe) error {
	check := func() error {
		var wrong []string
		for _, p := range probes {
			if got := k.reach(ctx, p); got != want {
				wrong = append(wrong, fmt.Sprintf("%s: %s", p, got))
			}
		}
		if len(wrong) > 0 {
			return fmt.Errorf("want %s, got %s", want, strings.Join(wrong, "; "))
		}
		return nil
	}
	if err := pollFor(ctx, 20*time.Second, check); err != nil {
		return err
	}
	return check()
}

// create creates a ClusterNetworkPolicy (deleted when the check ends).
func (k *cnpChecker) create(ctx context.Context, p *cnpv1beta1.ClusterNetworkPolicy) error {
	p.TypeMeta = metav1.TypeMeta{APIVersion: cnpv1beta1.SchemeGroupVersion.String(), Kind: "ClusterNetworkPolicy"}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		return fmt.Errorf("ClusterNetworkPolicy %s: %w", p.Name, err)
	}
	delete(obj, "status")
	if _, err := k.dyn.Resource(cnpResource).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create ClusterNetworkPolicy %s: %w", p.Name, err)
	}
	return nil
}

// patch merges a JSON patch into a ClusterNetworkPolicy.
func (k *cnpChecker) patch(ctx context.Context, name, patch string) error {
	if _, err := k.dyn.Resource(cnpResource).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch ClusterNetworkPolicy %s with %s: %w", name, patch, err)
	}
	return nil
}

// remove deletes ClusterNetworkPolicies, those already gone included.
func (k *cnpChecker) remove(names ...string) {
	for _, n := range names {
		err := k.dyn.Resource(cnpResource).Delete(context.Background(), n, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			k.logf("  delete ClusterNetworkPolicy %s: %v", n, err)
		}
	}
}

// clientEgress is a policy whose subject is the client's namespace, with
// egress rules only.
func clientEgress(name string, tier cnpv1beta1.Tier, priority int32, rules ...cnpv1beta1.ClusterNetworkPolicyEgressRule) *cnpv1beta1.ClusterNetworkPolicy {
	return &cnpv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: cnpv1beta1.ClusterNetworkPolicySpec{
			Tier: tier, Priority: priority,
			Subject: cnpv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": nsCNPClient}}},
			Egress: rules,
		},
	}
}

// adminNetworks: an Admin Deny of the pod CIDR drops TCP and UDP to both
// servers; an Admin Accept of one server's /32 at a lower priority number
// lets it through again, until its number is raised above the Deny's.
func (k *cnpChecker) adminNetworks(ctx context.Context) error {
	defer k.remove("weir-deny-pod-cidr", "weir-accept-far")
	near, far := tcpUDP(k.near, cnpTCPIn, cnpUDPIn), tcpUDP(k.far, cnpTCPIn, cnpUDPIn)
	both := append(append([]probe(nil), near...), far...)
	if err := k.expect(ctx, connected, both...); err != nil {
		return fmt.Errorf("before any policy: %w", err)
	}
	cidr := k.c.ClusterCIDR.String()
	if err := k.create(ctx, clientEgress("weir-deny-pod-cidr", cnpv1beta1.AdminTier, 20, cnpv1beta1.ClusterNetworkPolicyEgressRule{
		Name: "deny-pods", Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
		To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1beta1.CIDR{cnpv1beta1.CIDR(cidr)}}},
	})); err != nil {
		return err
	}
	if err := k.expect(ctx, dropped, both...); err != nil {
		return fmt.Errorf("Deny %s at priority 20: %w", cidr, err)
	}
	if err := k.create(ctx, clientEgress("weir-accept-far", cnpv1beta1.AdminTier, 10, cnpv1beta1.ClusterNetworkPolicyEgressRule{
		Name: "accept-far", Action: cnpv1beta1.ClusterNetworkPolicyRuleActionAccept,
		To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1beta1.CIDR{cnpv1beta1.CIDR(k.far + "/32")}}},
	})); err != nil {
		return err
	}
	if err := k.expectEach(ctx, far, near); err != nil {
		return fmt.Errorf("Accept %s/32 at priority 10 over Deny %s at 20: %w", k.far, cidr, err)
	}
	if err := k.patch(ctx, "weir-accept-far", `{"spec":{"priority":30}}`); err != nil {
		return err
	}
	if err := k.expect(ctx, dropped, far...); err != nil {
		return fmt.Errorf("Accept %s/32 moved to priority 30, under the Deny: %w", k.far, err)
	}
	return nil
}

// expectEach expects the first probes to connect and the second to be
// dropped.
func (k *cnpChecker) expectEach(ctx context.Context, connect, drop []probe) error {
	if err := k.expect(ctx, connected, connect...); err != nil {
		return err
	}
	return k.expect(ctx, dropped, drop...)
}

// portRange is a destination port range.
func portRange(start, end int32) *cnpv1beta1.Port {
	return &cnpv1beta1.Port{Range: &cnpv1beta1.PortRange{Start: start, End: end}}
}

// adminPortRange: an Admin Deny of TCP 8000-8080 and UDP 8081-8090 to the
// server namespace's pods drops TCP 8080 (the range's end) and UDP 8081
// (its start), and nothing on 9090/9091.
func (k *cnpChecker) adminPortRange(ctx context.Context) error {
	defer k.remove("weir-deny-port-ranges")
	in, out := tcpUDP(k.far, cnpTCPIn, cnpUDPIn), tcpUDP(k.far, cnpTCPOut, cnpUDPOut)
	if err := k.expect(ctx, connected, append(in, out...)...); err != nil {
		return fmt.Errorf("before any policy: %w", err)
	}
	if err := k.create(ctx, clientEgress("weir-deny-port-ranges", cnpv1beta1.AdminTier, 15, cnpv1beta1.ClusterNetworkPolicyEgressRule{
		Name: "deny-ranges", Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
		To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Pods: &cnpv1beta1.NamespacedPod{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": nsCNPServer}},
		}}},
		Protocols: []cnpv1beta1.ClusterNetworkPolicyProtocol{
			{TCP: &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: portRange(8000, cnpTCPIn)}},
			{UDP: &cnpv1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: portRange(cnpUDPIn, 8090)}},
		},
	})); err != nil {
		return err
	}
	if err := k.expectEach(ctx, out, in); err != nil {
		return fmt.Errorf("Deny TCP 8000-%d and UDP %d-8090: %w", cnpTCPIn, cnpUDPIn, err)
	}
	return nil
}

// baselineNodes: a Baseline Deny to the far node (by its hostname label)
// drops TCP and UDP to the hostNetwork server there (the forward path) and
// not to the one on the client's own node; a Deny to every node (an empty
// selector) drops that one too (the input path).
func (k *cnpChecker) baselineNodes(ctx context.Context) error {
	defer k.remove("weir-deny-nodes")
	far := k.c.Nodes[len(k.c.Nodes)-1].Name
	hostNear, hostFar := tcpUDP(k.hostNear, cnpHostTCP, cnpHostUDP), tcpUDP(k.hostFar, cnpHostTCP, cnpHostUDP)
	if err := k.expect(ctx, connected, append(hostNear, hostFar...)...); err != nil {
		return fmt.Errorf("before any policy: %w", err)
	}
	if err := k.create(ctx, clientEgress("weir-deny-nodes", cnpv1beta1.BaselineTier, 10, cnpv1beta1.ClusterNetworkPolicyEgressRule{
		Name: "deny-nodes", Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
		To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Nodes: &metav1.LabelSelector{
			MatchLabels: map[string]string{"kubernetes.io/hostname": far}}}},
	})); err != nil {
		return err
	}
	if err := k.expectEach(ctx, hostNear, hostFar); err != nil {
		return fmt.Errorf("Deny to node %s: %w", far, err)
	}
	if err := k.patch(ctx, "weir-deny-nodes", `{"spec":{"egress":[{"name":"deny-nodes","action":"Deny","to":[{"nodes":{}}]}]}}`); err != nil {
		return err
	}
	if err := k.expect(ctx, dropped, append(hostNear, hostFar...)...); err != nil {
		return fmt.Errorf("Deny to every node: %w", err)
	}
	return nil
}
