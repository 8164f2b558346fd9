// Package textdiff compares test output with expected text: a small
// line-oriented diff for failure messages, golden files, and the pieces
// an output must mention.
package textdiff

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Lines lists the lines that differ between want and got, by number.
func Lines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}

// Golden compares got with the reviewed file at path, after rewriting the
// file with got when update is set (a test's -update flag), and reports a
// difference as a line diff.
func Golden(t testing.TB, path, got string, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update and review):\n%s", path, Lines(string(want), got))
	}
}

// Mentions reports each of wants that text, the output called what in the
// message, does not contain.
func Mentions(t testing.TB, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, text)
		}
	}
}
