package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/weir-cni/weir/integration/cluster"
)

// Namespaces of the domainNames checks: the pods whose egress the
// policies select, the servers standing for the internet, and the test
// resolver (a namespace of its own, which no policy of the checks
// touches).
const (
	nsDNSClient   = "weir-dns-client"
	nsDNSServer   = "weir-dns-server"
	nsDNSResolver = "weir-dns-resolver"
)

// The test resolver's image: the DNS add-on's binary, loaded on every
// node, run as a plain authoritative server of one zone of the checks'
// own (the file plugin). The cluster's DNS Service is not on the path.
const resolverImage = cluster.CoreDNSImage

// dnsChecker holds the addresses of the checks' servers and resolver.
type dnsChecker struct {
	*cnpChecker
	// web are three agnhost servers in nsDNSServer (TCP 8080): the
	// answers of the zone's names.
	web      [3]string
	resolver string
}

// dnsChecks runs weir's ClusterNetworkPolicy domainNames checks: the
// client's lookups through its node's DNS proxy of a test resolver pod,
// then connections to what the answers gave.
func dnsChecks(ctx context.Context, c *cluster.Cluster, o options, runDir string, logf func(string, ...any)) cluster.Result {
	k := &dnsChecker{cnpChecker: &cnpChecker{checker: &checker{c: c, o: o, logf: logf}}}
	return runChecks(ctx, "weir-dns", runDir, logf, k.setup, k.cleanup, []check{
		{"domainNames: an address no allowed name's answer gave stays denied, looked up under another name or not at all", k.notAllowed},
		{"domainNames: the first connection right after the lookup of an allowed name (exact, and a wildcard of two labels) connects", k.firstConnection},
		{"domainNames: a pod the rule does not select gains nothing from its own or another pod's lookups", k.notSelected},
		{"domainNames: an address is denied again when its answer's TTL (raised to the agent's 5 s floor) has run out", k.expiry},
		{"domainNames: a CNAME chain from an allowed name lets its final address in", k.cname},
		{"domainNames: deleting the policy removes what its rule learned at once", k.policyDeleted},
	})
}

func (k *dnsChecker) setup(ctx context.Context) error {
	if err := k.begin(ctx, nsDNSClient, nsDNSServer, nsDNSResolver); err != nil {
		return err
	}
	near, far := k.c.Nodes[0].Name, k.c.Nodes[len(k.c.Nodes)-1].Name
	pods := []*corev1.Pod{
		idlePod(nsDNSClient, "client", map[string]string{"app": "client"}, near),
		idlePod(nsDNSClient, "other", map[string]string{"app": "other"}, near),
		serverPod(nsDNSServer, "web0", nil, far), serverPod(nsDNSServer, "web1", nil, near), serverPod(nsDNSServer, "web2", nil, far),
	}
	if err := k.startPods(ctx, pods, map[string]*string{"web0": &k.web[0], "web1": &k.web[1], "web2": &k.web[2]}); err != nil {
		return err
	}
	if _, err := k.c.Client.CoreV1().ConfigMaps(nsDNSResolver).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "zone"},
		Data:       map[string]string{"Corefile": resolverCorefile, "example.com.db": exampleZone(k.web)},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	return k.startPods(ctx, []*corev1.Pod{resolverPod(far)}, map[string]*string{"resolver": &k.resolver})
}

func (k *dnsChecker) cleanup(ctx context.Context) error {
	k.remove("weir-dns-allow", "weir-dns-deny")
	for _, ns := range []string{nsDNSClient, nsDNSServer, nsDNSResolver} {
		_ = k.c.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	}
	return nil
}

const resolverCorefile = `example.com:53 {
    file /etc/coredns/example.com.db
    log
}
`

// exampleZone is the test resolver's zone: each name the checks look up,
// answered with one of the servers' addresses.
func exampleZone(web [3]string) string {
	return fmt.Sprintf(`$ORIGIN example.com.
@         3600 IN SOA ns.example.com. admin.example.com. 1 7200 3600 1209600 3600
@         3600 IN NS  ns.example.com.
ns        3600 IN A   192.0.2.53
evil      30   IN A   %[1]s
api       30   IN A   %[1]s
a.b.cdn   300  IN A   %[2]s
short.cdn 1    IN A   %[3]s
img.cdn   30   IN CNAME edge
edge      30   IN A   %[3]s
`, web[0], web[1], web[2])
}

// resolverPod runs the test resolver on node, ready once it serves TCP.
func resolverPod(node string) *corev1.Pod {
	probe := &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(53)}},
		PeriodSeconds: 2,
	}
	p := agnhostPod(nsDNSResolver, "resolver", nil, node, corev1.Container{
		Name: "dns", Command: []string{"/coredns"}, Args: []string{"-conf", "/etc/coredns/Corefile"},
		ReadinessProbe: probe,
		VolumeMounts:   []corev1.VolumeMount{{Name: "zone", MountPath: "/etc/coredns", ReadOnly: true}},
	})
	p.Spec.Containers[0].Image = resolverImage
	p.Spec.Volumes = []corev1.Volume{{Name: "zone", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "zone"}}}}}
	return p
}

// The policies of the checks: the client pods may reach api.example.com
// and *.cdn.example.com (Admin Accept, priority 10); every pod of the
// client namespace is denied the servers (Admin Deny, priority 20).
func dnsAllow() *cnpv1beta1.ClusterNetworkPolicy {
	return &cnpv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "weir-dns-allow"},
		Spec: cnpv1beta1.ClusterNetworkPolicySpec{
			Tier: cnpv1beta1.AdminTier, Priority: 10,
			Subject: cnpv1beta1.ClusterNetworkPolicySubject{Pods: &cnpv1beta1.NamespacedPod{
				NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": nsDNSClient}},
				PodSelector:       metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
			}},
			Egress: []cnpv1beta1.ClusterNetworkPolicyEgressRule{{
				Name: "saas", Action: cnpv1beta1.ClusterNetworkPolicyRuleActionAccept,
				To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{DomainNames: []cnpv1beta1.DomainName{"api.example.com", "*.cdn.example.com"}}},
			}},
		},
	}
}

func dnsDeny() *cnpv1beta1.ClusterNetworkPolicy {
	return &cnpv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "weir-dns-deny"},
		Spec: cnpv1beta1.ClusterNetworkPolicySpec{
			Tier: cnpv1beta1.AdminTier, Priority: 20,
			Subject: cnpv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": nsDNSClient}}},
			Egress: []cnpv1beta1.ClusterNetworkPolicyEgressRule{{
				Name: "no-servers", Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
				To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Pods: &cnpv1beta1.NamespacedPod{
					NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": nsDNSServer}},
				}}},
			}},
		},
	}
}

// lookupConnect looks name up from pod through the test resolver and, if
// the lookup answered, connects to addr on TCP 8080 at once, in the same
// shell: OK, or what failed (LOOKUP FAILED, TIMEOUT, ...).
func (k *dnsChecker) lookupConnect(ctx context.Context, pod, name, addr string) string {
	script := fmt.Sprintf("nslookup -type=a %s %s >/dev/null 2>&1 || { echo 'LOOKUP FAILED'; exit 1; }; exec /agnhost connect --timeout=3s %s",
		name, k.resolver, net.JoinHostPort(addr, "8080"))
	out, err := k.exec(ctx, nsDNSClient, pod, "sh", "-c", script)
	return outcome(out, err)
}

// connectFrom connects from pod to addr on TCP 8080 with no lookup.
func (k *dnsChecker) connectFrom(ctx context.Context, pod, addr string) string {
	out, err := k.exec(ctx, nsDNSClient, pod, "/agnhost", "connect", "--timeout=3s", net.JoinHostPort(addr, "8080"))
	return outcome(out, err)
}

// outcome is what a probe's output says: OK, TIMEOUT, REFUSED, LOOKUP
// FAILED or its first line.
func outcome(out string, err error) string {
	switch {
	case err == nil:
		return connected
	case strings.Contains(out, "LOOKUP FAILED"):
		return "LOOKUP FAILED"
	case strings.Contains(out, "TIMEOUT"):
		return dropped
	case strings.Contains(out, "REFUSED"):
		return "REFUSED"
	}
	return firstLines(out, 1)
}

// want fails unless a probe gave what was expected.
func want(what, got, expected string) error {
	if got != expected {
		return fmt.Errorf("%s: want %s, got %s", what, expected, got)
	}
	return nil
}

// notAllowed creates the policies, waits until the Deny is in the kernel
// (a connection with no lookup times out) and checks that a name no rule
// allows, answered with a server's address, does not let it in.
func (k *dnsChecker) notAllowed(ctx context.Context) error {
	for _, ip := range k.web {
		if err := want("before any policy, client to "+ip, k.connectFrom(ctx, "client", ip), connected); err != nil {
			return err
		}
	}
	for _, p := range []*cnpv1beta1.ClusterNetworkPolicy{dnsAllow(), dnsDeny()} {
		if err := k.create(ctx, p); err != nil {
			return err
		}
	}
	err := pollFor(ctx, 20*time.Second, func() error {
		return want("client to "+k.web[1]+" with no lookup", k.connectFrom(ctx, "client", k.web[1]), dropped)
	})
	if err != nil {
		return err
	}
	return want("client: lookup of evil.example.com then "+k.web[0], k.lookupConnect(ctx, "client", "evil.example.com", k.web[0]), dropped)
}

// firstConnection: the connection fired right after each first lookup
// connects, with no retry; an address the answers did not give stays
// denied.
func (k *dnsChecker) firstConnection(ctx context.Context) error {
	if err := want("client: lookup of api.example.com then "+k.web[0], k.lookupConnect(ctx, "client", "api.example.com", k.web[0]), connected); err != nil {
		return err
	}
	if err := want("client to "+k.web[2]+" (no answer gave it)", k.connectFrom(ctx, "client", k.web[2]), dropped); err != nil {
		return err
	}
	return want("client: lookup of a.b.cdn.example.com then "+k.web[1], k.lookupConnect(ctx, "client", "a.b.cdn.example.com", k.web[1]), connected)
}

// notSelected: the other pod of the client namespace, which the Accept's
// subject does not select, stays denied what the client learned and what
// it looks up itself.
func (k *dnsChecker) notSelected(ctx context.Context) error {
	if err := want("other to "+k.web[0]+" (the client learned it)", k.connectFrom(ctx, "other", k.web[0]), dropped); err != nil {
		return err
	}
	return want("other: lookup of api.example.com then "+k.web[0], k.lookupConnect(ctx, "other", "api.example.com", k.web[0]), dropped)
}

// expiry: short.cdn.example.com has a TTL of 1 s, which the agent raises
// to its floor (--dns-min-ttl, 5 s): the address connects right after the
// lookup and is denied once the floor has passed.
func (k *dnsChecker) expiry(ctx context.Context) error {
	if err := want("client: lookup of short.cdn.example.com then "+k.web[2], k.lookupConnect(ctx, "client", "short.cdn.example.com", k.web[2]), connected); err != nil {
		return err
	}
	time.Sleep(7 * time.Second)
	return want("client to "+k.web[2]+" 7 s after its 5 s answer", k.connectFrom(ctx, "client", k.web[2]), dropped)
}

// cname: img.cdn.example.com is a CNAME of edge.example.com (no rule
// names it); its address is let in by the chain.
func (k *dnsChecker) cname(ctx context.Context) error {
	return want("client: lookup of img.cdn.example.com (CNAME edge.example.com) then "+k.web[2],
		k.lookupConnect(ctx, "client", "img.cdn.example.com", k.web[2]), connected)
}

// policyDeleted: with the Accept deleted, what it learned is denied as
// soon as the agent has synced: a.b.cdn.example.com's address, learned
// with a TTL of 300 s, is denied within the 20 s the check waits.
func (k *dnsChecker) policyDeleted(ctx context.Context) error {
	if err := want("client to "+k.web[1]+" (learned from a.b.cdn.example.com)", k.connectFrom(ctx, "client", k.web[1]), connected); err != nil {
		return err
	}
	k.remove("weir-dns-allow")
	return pollFor(ctx, 20*time.Second, func() error {
		return want("client to "+k.web[1]+" after the Accept's deletion", k.connectFrom(ctx, "client", k.web[1]), dropped)
	})
}
