package main

import (
	"os"
	"path/filepath"
	"testing"
)

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

// -heap-profiles: a directory that does not exist is made, one that
// cannot be (under a file) is an error, and nothing is left in either.
func TestCheckProfileDir(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "a", "b")
	if err := checkProfileDir(dir); err != nil {
		t.Fatalf("checkProfileDir(%s): %v", dir, err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("%s after the check: %v, %v; want an empty directory", dir, ents, err)
	}
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkProfileDir(filepath.Join(file, "profiles")); err == nil {
		t.Errorf("checkProfileDir under a file: no error")
	}
	if err := checkProfileDir(""); err != nil {
		t.Errorf("checkProfileDir(\"\"): %v", err)
	}
}
