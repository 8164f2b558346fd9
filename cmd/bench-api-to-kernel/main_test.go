package main

import "testing"

// -sizes and -peer-sizes: known names, in order, spaces allowed; any
// unknown name is an error.
func TestParseSizes(t *testing.T) {
	got, err := parseSizes("50k, 10k")
	if err != nil || len(got) != 2 || got[0].name != "50k" || got[1].name != "10k" {
		t.Errorf("parseSizes(50k, 10k) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "100k", "10k,", "10K"} {
		if got, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) = %v, want an error", bad, got)
		}
	}
}
