package policy

import (
	"slices"
	"testing"

	"github.com/weir-cni/weir/internal/textdiff"
	networkingv1 "k8s.io/api/networking/v1"
)

// TestPolicyListOrderAndRepeats runs a Compiler through lists of the same
// policy objects in another order, with one listed twice and with a
// changed copy of one at the place of the original: a policy known by its
// place in the last list (listedAt) must still be the one listed there,
// and every result is Compile's.
func TestPolicyListOrderAndRepeats(t *testing.T) {
	s := selectionSnapshot(t, DeniedLog{})
	web, api, back := s.Policies[0], s.Policies[1], s.Policies[2]
	changed := web.DeepCopy()
	changed.Spec.Ingress[0].Ports[0].Port.IntVal = 8080
	x := NewCompiler()
	for i, list := range [][]*networkingv1.NetworkPolicy{
		{web, api, back},
		{back, api, web},
		{back, web, web, api},
		{back, api, web},
		{back, web, web}, // api goes: the repeat counts once
		{back, api, changed},
		{back, api, web},
		{web, changed, api},
		{web, api}, // the state holds changed, listed last before
		{nil, back, api},
		{web, back, api},
	} {
		s.Policies = slices.Clone(list)
		got, want := x.Compile(s), Compile(s)
		if got.String() != want.String() {
			t.Fatalf("list %d: Compiler differs from Compile:\n%s", i, textdiff.Lines(want.String(), got.String()))
		}
	}
}
