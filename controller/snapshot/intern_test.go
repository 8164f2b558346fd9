package snapshot

import (
	"reflect"
	"strconv"
	"testing"

	"github.com/weir-cni/weir/policy"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNewPodSharesEqualValues: pods with equal labels get one map and
// pods with equal named ports one slice, neither the caller's; others
// keep their own.
func TestNewPodSharesEqualValues(t *testing.T) {
	mk := func(labels map[string]string, port int32) *Pod {
		return NewPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}}}}}})
	}
	in := map[string]string{"app": "shared-test", "pod-template-hash": "1"}
	a := mk(in, 80)
	b := mk(map[string]string{"pod-template-hash": "1", "app": "shared-test"}, 80)
	c := mk(map[string]string{"app": "shared-test", "pod-template-hash": "2"}, 81)
	same := func(x, y any) bool { return reflect.ValueOf(x).UnsafePointer() == reflect.ValueOf(y).UnsafePointer() }
	if !same(a.Labels, b.Labels) || !same(a.Ports, b.Ports) {
		t.Error("equal label sets or port lists are two copies")
	}
	if same(a.Labels, in) {
		t.Error("the table shares the caller's map")
	}
	if same(a.Labels, c.Labels) || same(a.Ports, c.Ports) || c.Labels["pod-template-hash"] != "2" || c.Ports[0].Port != 81 {
		t.Errorf("different values share a copy: %v %v", c.Labels, c.Ports)
	}
}

// TestSharedKeysKeepDistinctValuesApart pins that pods whose labels or
// ports differ never share a copy, even with values that hold the bytes a
// naive key would separate fields with.
func TestSharedKeysKeepDistinctValuesApart(t *testing.T) {
	labels := [][2]map[string]string{
		{{"a": "x", "b": "y"}, {"a": "x\x00b\x00y"}}, // NUL in a value
		{{"a": "1:x"}, {"a": "1", "x": ""}},          // a separator-like value
	}
	for _, l := range labels {
		if labelsKey(l[0]) == labelsKey(l[1]) {
			t.Errorf("label sets %q and %q have one key", l[0], l[1])
		}
	}
	ports := [2][]policy.ContainerPort{ // NUL in a name
		{{Name: "x", Protocol: "TCP", Port: 80}, {Name: "y", Protocol: "TCP", Port: 81}},
		{{Name: "x\x00TCP\x0080\x00y", Protocol: "TCP", Port: 81}},
	}
	if portsKey(ports[0]) == portsKey(ports[1]) {
		t.Errorf("port lists %v and %v have one key", ports[0], ports[1])
	}
}

func TestSharedTableStartsOverWhenFull(t *testing.T) {
	tab := sharedTable[map[string]string]{clone: labelSets.clone}
	first := tab.get("0", map[string]string{"n": "0"})
	for i := 1; i <= maxShared; i++ {
		tab.get(strconv.Itoa(i), map[string]string{"n": strconv.Itoa(i)})
	}
	if len(tab.byKey) > maxShared {
		t.Errorf("table holds %d values, more than %d", len(tab.byKey), maxShared)
	}
	if again := tab.get("0", map[string]string{"n": "0"}); reflect.ValueOf(again).UnsafePointer() == reflect.ValueOf(first).UnsafePointer() {
		t.Error("the first value outlived the table's start-over")
	}
}
