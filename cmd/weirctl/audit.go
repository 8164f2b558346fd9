package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/weir-cni/weir/agentapi"
)

// printAudit prints an audit as a table or as JSON and returns the exit
// status: 3 when anything is open, 0 when nothing is, 1 when the answer
// does not decode.
func printAudit(w io.Writer, output string, raw json.RawMessage) int {
	var a agentapi.Audit
	if err := json.Unmarshal(raw, &a); err != nil {
		fmt.Fprintf(w, "%s\n", raw)
		return 1
	}
	if output == "json" {
		b, _ := json.MarshalIndent(a, "", "  ")
		fmt.Fprintf(w, "%s\n", b)
	} else {
		writeAuditTable(w, a)
	}
	if a.Findings() {
		return 3
	}
	return 0
}

func writeAuditTable(w io.Writer, a agentapi.Audit) {
	fmt.Fprintf(w, "Audit from node %s's agent (its view of the whole cluster).\n\n", a.Node)
	if len(a.Namespaces) == 0 {
		fmt.Fprintln(w, "Every namespace has a NetworkPolicy.")
	} else {
		fmt.Fprintf(w, "Namespaces without a NetworkPolicy (%d):\n", len(a.Namespaces))
		for _, ns := range a.Namespaces {
			fmt.Fprintf(w, "  %s\n", ns)
		}
	}
	fmt.Fprintln(w)
	if len(a.Pods) == 0 {
		fmt.Fprintln(w, "Every pod is isolated for ingress and egress.")
	} else {
		fmt.Fprintf(w, "Pods not isolated (%d): OPEN lists the directions no policy selects them for.\n", len(a.Pods))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAMESPACE\tPOD\tNODE\tOPEN")
		for _, p := range a.Pods {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Namespace, p.Name, p.Node, openDirections(p))
		}
		_ = tw.Flush()
	}
	fmt.Fprintln(w, "\nAlways allowed, whatever the policies: a pod to itself, and a pod's own node to and from it.")
}

// openDirections names the directions no policy isolates p for.
func openDirections(p agentapi.AuditPod) string {
	switch {
	case p.HostNetwork:
		return "ingress,egress (hostNetwork: not policed)"
	case p.Ingress && p.Egress:
		return "ingress,egress"
	case p.Ingress:
		return "ingress"
	}
	return "egress"
}
