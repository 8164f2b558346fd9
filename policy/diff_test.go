package policy

import (
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weir-cni/weir/internal/textdiff"
	"github.com/weir-cni/weir/ruleset"
)

// patch applies changes to a ruleset the way the kernel would.
func patch(r ruleset.Ruleset, ch ruleset.Changes) ruleset.Ruleset {
	sets := map[string]ruleset.Set{}
	for _, s := range r.Sets {
		sets[s.Name] = s
	}
	chains := map[string]ruleset.Chain{}
	for _, c := range r.Chains {
		chains[c.Name] = c
	}
	for _, s := range ch.AddSets {
		sets[s.Name] = s
	}
	for _, e := range ch.DelElems {
		s := sets[e.Set]
		gone := map[string]bool{}
		for _, x := range e.Elems {
			gone[x.ID()] = true
		}
		var keep []ruleset.Elem
		for _, x := range s.Elems {
			if !gone[x.ID()] {
				keep = append(keep, x)
			}
		}
		s.Elems = keep
		sets[e.Set] = s
	}
	for _, e := range ch.AddElems {
		s := sets[e.Set]
		s.Elems = ruleset.SortElems(append(append([]ruleset.Elem(nil), s.Elems...), e.Elems...))
		sets[e.Set] = s
	}
	for _, c := range append(append([]ruleset.Chain(nil), ch.AddChains...), ch.ReplaceChains...) {
		chains[c.Name] = c
	}
	for _, n := range ch.DelChains {
		delete(chains, n)
	}
	for _, n := range ch.DelSets {
		delete(sets, n)
	}
	counters := map[string]bool{}
	for _, c := range r.Counters {
		counters[c.Name] = true
	}
	for _, c := range ch.AddCounters {
		counters[c] = true
	}
	for _, c := range ch.DelCounters {
		delete(counters, c)
	}
	var out ruleset.Ruleset
	for c := range counters { // the kernel knows counters by name only
		out.Counters = append(out.Counters, ruleset.Counter{Name: c})
	}
	sort.Slice(out.Counters, func(i, j int) bool { return out.Counters[i].Name < out.Counters[j].Name })
	for _, s := range sets {
		out.Sets = append(out.Sets, s)
	}
	for _, c := range chains {
		out.Chains = append(out.Chains, c)
	}
	sort.Slice(out.Sets, func(i, j int) bool { return out.Sets[i].Name < out.Sets[j].Name })
	sort.Slice(out.Chains, func(i, j int) bool { return out.Chains[i].Name < out.Chains[j].Name })
	return out
}

// TestDiffTurnsOldIntoNew diffs every pair of scenarios and checks that the
// changes, applied to the old ruleset, give the new one.
func TestDiffTurnsOldIntoNew(t *testing.T) {
	files, _ := filepath.Glob("testdata/compile/*.yaml")
	var rs []ruleset.Ruleset
	for _, f := range files {
		rs = append(rs, Compile(loadScenario(t, f).Snapshot))
	}
	for i, old := range rs {
		for j, new := range rs {
			ch := ruleset.Diff(old, new)
			if ch.Full {
				t.Errorf("%s -> %s: unexpected full apply: %s", files[i], files[j], ch.Reason)
				continue
			}
			if got, want := patch(old, ch).String(), new.String(); got != want {
				t.Errorf("%s -> %s: patched ruleset differs:\n%s", files[i], files[j], textdiff.Lines(want, got))
			}
			if i == j && !ch.Empty() {
				t.Errorf("%s: diff with itself is not empty: %s", files[i], ch)
			}
		}
	}
}

// TestDiffScope pins what each kind of change touches.
func TestDiffScope(t *testing.T) {
	base := loadScenario(t, "testdata/compile/talk-policies.yaml").Snapshot
	webChain := policyChainName(dirIngress, "default/web-allow-prod")
	cases := []struct {
		name   string
		change func(Snapshot) Snapshot
		check  func(t *testing.T, ch ruleset.Changes)
	}{
		{
			name: "remote pod appearing changes elements only",
			change: func(s Snapshot) Snapshot {
				s.Pods = append(append([]Pod(nil), s.Pods...), Pod{Namespace: "prod", Name: "late", Node: "n2",
					IPs: []netip.Addr{netip.MustParseAddr("10.0.1.21")}})
				return s
			},
			check: elementsOnly,
		},
		{
			name: "remote pod leaving changes elements only",
			change: func(s Snapshot) Snapshot {
				var pods []Pod
				for _, p := range s.Pods {
					if p.Namespace != "prod" {
						pods = append(pods, p)
					}
				}
				s.Pods = pods
				return s
			},
			check: elementsOnly,
		},
		{
			name: "namespace label change changes elements only",
			change: func(s Snapshot) Snapshot {
				s.Namespaces = append([]Namespace(nil), s.Namespaces...)
				for i, ns := range s.Namespaces {
					if ns.Name == "other" {
						s.Namespaces[i].Labels = map[string]string{"purpose": "production"}
					}
				}
				return s
			},
			check: elementsOnly,
		},
		{
			name: "local pod label change moves its map elements and selection chains only",
			change: func(s Snapshot) Snapshot {
				s.Pods = append([]Pod(nil), s.Pods...)
				s.Pods[0].Labels = map[string]string{"app": "web", "role": "db"}
				return s
			},
			check: func(t *testing.T, ch ruleset.Changes) {
				if len(ch.AddSets)+len(ch.DelSets)+len(ch.ReplaceChains) != 0 || len(ch.AddElems) == 0 {
					t.Errorf("want elements and selection chains only, got %s", ch)
				}
				for _, c := range ch.AddChains {
					if !strings.HasPrefix(c.Name, prefixSelection) {
						t.Errorf("unexpected new chain %s", c.Name)
					}
				}
				for _, c := range ch.DelChains {
					if !strings.HasPrefix(c, prefixSelection) {
						t.Errorf("unexpected deleted chain %s", c)
					}
				}
			},
		},
		{
			name: "policy change rewrites only that policy",
			change: func(s Snapshot) Snapshot {
				s.Policies = append(s.Policies[:0:0], s.Policies...)
				for i, p := range s.Policies {
					if p.Name == "web-allow-prod" {
						p = p.DeepCopy()
						p.Spec.Ingress[0].Ports = append(p.Spec.Ingress[0].Ports, ptrPort(80))
						s.Policies[i] = p
					}
				}
				return s
			},
			check: func(t *testing.T, ch ruleset.Changes) {
				if len(ch.ReplaceChains) != 1 || ch.ReplaceChains[0].Name != webChain {
					t.Errorf("want only %s rewritten, got %s", webChain, ch)
				}
				if len(ch.AddSets)+len(ch.DelSets)+len(ch.AddChains)+len(ch.DelChains)+len(ch.AddElems)+len(ch.DelElems) != 0 {
					t.Errorf("want nothing else, got %s", ch)
				}
				if len(ch.AddCounters)+len(ch.DelCounters) != 0 {
					t.Errorf("the rewritten rules' counters must stay (keep counting), got %s", ch)
				}
			},
		},
	}
	old := Compile(base)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			new := Compile(tc.change(base))
			ch := ruleset.Diff(old, new)
			if ch.Empty() {
				t.Fatal("no change detected")
			}
			tc.check(t, ch)
		})
	}
}

func elementsOnly(t *testing.T, ch ruleset.Changes) {
	t.Helper()
	if len(ch.AddSets)+len(ch.DelSets)+len(ch.AddChains)+len(ch.ReplaceChains)+len(ch.DelChains)+len(ch.AddCounters)+len(ch.DelCounters) != 0 || ch.Full {
		t.Errorf("want element changes only, got %s", ch)
	}
}

func ptrPort(p int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(p)
	return networkingv1.NetworkPolicyPort{Port: &v}
}
