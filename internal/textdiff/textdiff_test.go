package textdiff

import (
	"os"
	"testing"
)

func TestLines(t *testing.T) {
	tests := []struct {
		name, want, got, diff string
	}{
		{"equal texts give nothing", "a\nb", "a\nb", ""},
		{"a changed line is shown both ways", "a\nb", "a\nc", "line 2:\n- b\n+ c\n"},
		{"a missing line shows as empty", "a\nb", "a", "line 2:\n- b\n+ \n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Lines(tc.want, tc.got); got != tc.diff {
				t.Errorf("Lines = %q, want %q", got, tc.diff)
			}
		})
	}
}

// TestGolden pins the golden-file cycle: -update writes the file, a later
// run with the same output passes.
func TestGolden(t *testing.T) {
	path := t.TempDir() + "/out.golden"
	Golden(t, path, "a\nb\n", true)
	Golden(t, path, "a\nb\n", false)
	if b, _ := os.ReadFile(path); string(b) != "a\nb\n" {
		t.Errorf("golden file holds %q", b)
	}
}
