package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestInstallCreatesDirAndExecutableCopy(t *testing.T) {
	src := writeFile(t, filepath.Join(t.TempDir(), "weir"), "plugin v1", 0o600)
	dir := filepath.Join(t.TempDir(), "opt", "cni", "bin")

	dst, err := install(src, dir, "weir")
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if want := filepath.Join(dir, "weir"); dst != want {
		t.Errorf("install returned %s, want %s", dst, want)
	}
	checkInstalled(t, dir, "weir", "plugin v1")
}

func TestInstallAgainReplacesAnOlderFile(t *testing.T) {
	src := writeFile(t, filepath.Join(t.TempDir(), "weir"), "plugin v2", 0o755)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "weir"), "plugin v1, a longer old binary", 0o644)
	writeFile(t, filepath.Join(dir, "bridge"), "another plugin", 0o755)

	for range 2 {
		if _, err := install(src, dir, "weir"); err != nil {
			t.Fatalf("install: %v", err)
		}
	}
	checkInstalled(t, dir, "weir", "plugin v2")
	if names := dirNames(t, dir); !slices.Equal(names, []string{"bridge", "weir"}) {
		t.Errorf("dir holds %v, want [bridge weir]", names)
	}
}

func TestInstallUnderAnotherName(t *testing.T) {
	src := writeFile(t, filepath.Join(t.TempDir(), "weir"), "plugin", 0o755)
	dir := t.TempDir()
	if _, err := install(src, dir, "weir-dev"); err != nil {
		t.Fatalf("install: %v", err)
	}
	checkInstalled(t, dir, "weir-dev", "plugin")
}

func TestInstallMissingSourceLeavesNothingBehind(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bin")
	_, err := install(filepath.Join(t.TempDir(), "missing"), dir, "weir")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("install = %v, want an fs.ErrNotExist", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dir %s was created (stat: %v)", dir, err)
	}
}

func TestInstallFailingRenameLeavesNoTempFile(t *testing.T) {
	src := writeFile(t, filepath.Join(t.TempDir(), "weir"), "plugin", 0o755)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "weir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := install(src, dir, "weir"); err == nil {
		t.Fatal("install over a directory succeeded")
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"weir"}) {
		t.Errorf("dir holds %v, want only the directory weir", names)
	}
}

func TestInstallRefusesANameThatIsAPath(t *testing.T) {
	src := writeFile(t, filepath.Join(t.TempDir(), "weir"), "plugin", 0o755)
	dir := t.TempDir()
	for _, name := range []string{"", ".", "..", "../weir", "sub/weir"} {
		if _, err := install(src, dir, name); err == nil {
			t.Errorf("install named %q succeeded", name)
		}
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("dir holds %v, want nothing", names)
	}
}

func TestInstallRefusesADirectoryAsSource(t *testing.T) {
	dir := t.TempDir()
	if _, err := install(t.TempDir(), dir, "weir"); err == nil {
		t.Fatal("install of a directory succeeded")
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("dir holds %v, want nothing", names)
	}
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// checkInstalled checks dir/name holds data with mode 0755.
func checkInstalled(t *testing.T, dir, name, data string) {
	t.Helper()
	path := filepath.Join(dir, name)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != data {
		t.Errorf("%s holds %q, want %q", path, got, data)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != 0o755 {
		t.Errorf("%s has mode %v, want -rwxr-xr-x", path, st.Mode())
	}
}

// dirNames lists dir, hidden temporary files included, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
