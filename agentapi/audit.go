package agentapi

// Audit answers OpAudit: what NetworkPolicy leaves open in the agent's view
// of the cluster (the namespaces and pods its informers hold), for
// operators checking CIS Kubernetes Benchmark 5.3.2 ("every namespace has
// a network policy").
type Audit struct {
	// Node is the agent's node: it enforces policy for its own pods only,
	// but sees, and audits, every pod of the cluster.
	Node string `json:"node"`
	// Namespaces lists the namespaces with no NetworkPolicy at all, sorted.
	Namespaces []string `json:"namespacesWithoutPolicy"`
	// Pods lists the pods that some direction is open for: no policy
	// selects them with that direction in its policyTypes. Sorted by
	// namespace, then name.
	Pods []AuditPod `json:"pods"`
}

// AuditPod is a pod that no policy isolates in at least one direction.
type AuditPod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Node      string `json:"node"`
	// Ingress and Egress are true for the directions no policy isolates:
	// every peer may connect to the pod (ingress) or be reached from it
	// (egress).
	Ingress bool `json:"ingressOpen"`
	Egress  bool `json:"egressOpen"`
	// HostNetwork pods share their node's network: no policy applies to
	// them, whatever selects them (both directions are open).
	HostNetwork bool `json:"hostNetwork,omitempty"`
}

// Findings reports whether the audit found anything open.
func (a Audit) Findings() bool { return len(a.Namespaces) > 0 || len(a.Pods) > 0 }
