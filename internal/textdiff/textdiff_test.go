package textdiff

import (
	"fmt"
	"os"
	"strings"
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

// TestMentions pins that Mentions fails for each missing text and only
// for those.
func TestMentions(t *testing.T) {
	var rec recorder
	Mentions(&rec, "log", "level=WARN pod=a", "level=WARN", "pod=b", "pod=a", "x")
	if len(rec.errors) != 2 || !strings.Contains(rec.errors[0], `log lacks "pod=b"`) || !strings.Contains(rec.errors[1], `log lacks "x"`) {
		t.Errorf("errors %q, want two, of pod=b and x", rec.errors)
	}
}

// recorder is a testing.TB that keeps its errors.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
