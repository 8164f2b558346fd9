package controller

import (
	"cmp"
	"errors"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/policy"
)

// audit answers weirctl audit from the snapshot the kernel's ruleset was
// compiled from.
func (a *Agent) audit() (agentapi.Audit, error) {
	_, snap, synced := a.published()
	if !synced {
		return agentapi.Audit{}, errors.New("no ruleset applied yet: nothing to audit")
	}
	return Audit(snap), nil
}

// Audit lists what NetworkPolicy leaves open in s: the namespaces that no
// policy lives in, and the pods that no policy isolates in some direction.
// A pod is isolated for a direction when a policy of its namespace selects
// it (spec.podSelector; {} selects every pod) and has that direction in its
// policyTypes (defaulted as policy.PolicyTypes does). A podSelector that does
// not parse selects every pod of its namespace, as the compiled ruleset
// does (fail closed). hostNetwork pods are never isolated. Audit is pure:
// its output is sorted.
func Audit(s policy.Snapshot) agentapi.Audit {
	out := agentapi.Audit{Node: s.Node.Name, Namespaces: []string{}, Pods: []agentapi.AuditPod{}}
	type selection struct {
		sel             labels.Selector // nil: every pod
		ingress, egress bool
	}
	byNS := map[string][]selection{}
	for _, p := range s.Policies {
		in, eg, _ := policy.PolicyTypes(p)
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			sel = nil
		}
		byNS[p.Namespace] = append(byNS[p.Namespace], selection{sel: sel, ingress: in, egress: eg})
	}
	for _, ns := range s.Namespaces {
		if len(byNS[ns.Name]) == 0 {
			out.Namespaces = append(out.Namespaces, ns.Name)
		}
	}
	for _, p := range s.Pods {
		ap := agentapi.AuditPod{Namespace: p.Namespace, Name: p.Name, Node: p.Node,
			Ingress: true, Egress: true, HostNetwork: p.HostNetwork}
		if !p.HostNetwork {
			set := labels.Set(p.Labels)
			for _, sp := range byNS[p.Namespace] {
				if sp.sel == nil || sp.sel.Matches(set) {
					ap.Ingress = ap.Ingress && !sp.ingress
					ap.Egress = ap.Egress && !sp.egress
				}
			}
		}
		if ap.Ingress || ap.Egress {
			out.Pods = append(out.Pods, ap)
		}
	}
	slices.Sort(out.Namespaces)
	slices.SortFunc(out.Pods, func(a, b agentapi.AuditPod) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}
