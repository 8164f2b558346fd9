package nsgroup

import "testing"

func TestOf(t *testing.T) {
	cases := []struct {
		name string
		ns   string
		want uint32
	}{
		{"unknown namespace stays in the default group", "", 0},
		// Pinned: the plugin and every agent version must agree on them.
		{"default is pinned", "default", 322657248},
		{"kube-system is pinned", "kube-system", 578131808},
	}
	for _, c := range cases {
		if got := Of(c.ns); got != c.want {
			t.Errorf("%s: Of(%q) = %d, want %d", c.name, c.ns, got, c.want)
		}
	}
}

func TestOfStaysInRange(t *testing.T) {
	for _, ns := range []string{"a", "default", "kube-system", "prod", "dev", "x-very-long-namespace-name-of-sixty-three-characters-0123456789"} {
		g := Of(ns)
		if g == 0 || g > Max {
			t.Errorf("Of(%q) = %d, want 1..%d", ns, g, Max)
		}
	}
}
