package snapshot

import (
	"reflect"
	"testing"

	"github.com/weir-cni/weir/policy"
)

// TestInternKeepsDistinctValuesApart pins that pods whose labels or ports
// differ never share a copy, even with values that hold the bytes a
// naive key would separate fields with.
func TestInternKeepsDistinctValuesApart(t *testing.T) {
	cases := []struct {
		name string
		a, b policy.Pod
	}{
		{"labels with NUL in a value",
			policy.Pod{Labels: map[string]string{"a": "x", "b": "y"}},
			policy.Pod{Labels: map[string]string{"a": "x\x00b\x00y"}}},
		{"labels with a separator-like value",
			policy.Pod{Labels: map[string]string{"a": "1:x"}},
			policy.Pod{Labels: map[string]string{"a": "1", "x": ""}}},
		{"ports with NUL in a name",
			policy.Pod{Ports: []policy.ContainerPort{{Name: "x", Protocol: "TCP", Port: 80}, {Name: "y", Protocol: "TCP", Port: 81}}},
			policy.Pod{Ports: []policy.ContainerPort{{Name: "x\x00TCP\x0080\x00y", Protocol: "TCP", Port: 81}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var pv podValues
			for _, want := range []policy.Pod{tc.a, tc.b} {
				p := want
				pv.intern(&p)
				if !reflect.DeepEqual(p.Labels, want.Labels) || !reflect.DeepEqual(p.Ports, want.Ports) {
					t.Errorf("interned %+v %+v, want %+v %+v", p.Labels, p.Ports, want.Labels, want.Ports)
				}
			}
		})
	}
}
