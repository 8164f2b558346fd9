package controller

import (
	"reflect"
	"testing"

	"github.com/weir-cni/weir/nft"
)

// TestInternKeepsDistinctValuesApart pins that pods whose labels or ports
// differ never share a copy, even with values that hold the bytes a
// naive key would separate fields with.
func TestInternKeepsDistinctValuesApart(t *testing.T) {
	cases := []struct {
		name string
		a, b nft.Pod
	}{
		{"labels with NUL in a value",
			nft.Pod{Labels: map[string]string{"a": "x", "b": "y"}},
			nft.Pod{Labels: map[string]string{"a": "x\x00b\x00y"}}},
		{"labels with a separator-like value",
			nft.Pod{Labels: map[string]string{"a": "1:x"}},
			nft.Pod{Labels: map[string]string{"a": "1", "x": ""}}},
		{"ports with NUL in a name",
			nft.Pod{Ports: []nft.ContainerPort{{Name: "x", Protocol: "TCP", Port: 80}, {Name: "y", Protocol: "TCP", Port: 81}}},
			nft.Pod{Ports: []nft.ContainerPort{{Name: "x\x00TCP\x0080\x00y", Protocol: "TCP", Port: 81}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var pv podValues
			for _, want := range []nft.Pod{tc.a, tc.b} {
				p := want
				pv.intern(&p)
				if !reflect.DeepEqual(p.Labels, want.Labels) || !reflect.DeepEqual(p.Ports, want.Ports) {
					t.Errorf("interned %+v %+v, want %+v %+v", p.Labels, p.Ports, want.Labels, want.Ports)
				}
			}
		})
	}
}
