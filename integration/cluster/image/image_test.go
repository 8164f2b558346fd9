package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one tar entry of a layer as the tests compare it.
type entry struct {
	typ  byte
	mode int64
	data string
}

func TestWriteReadsBackAsTheImageDescribed(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "weir")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "weir.tar")
	files := []File{
		{Path: "/usr/local/bin/weir", Src: bin},
		{Path: "/etc/weir/conf", Data: []byte("a=1\n"), Mode: 0o600},
	}
	cfg := Config{
		Entrypoint: []string{"/usr/local/bin/weir"},
		Cmd:        []string{"-v"},
		Env:        []string{"PATH=/usr/local/bin"},
		WorkingDir: "/",
	}
	if err := Write(out, []string{"weir:dev"}, files, cfg); err != nil {
		t.Fatalf("Write: %v", err)
	}

	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatalf("ImageFromPath: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform = %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if !slices.Equal(cf.Config.Entrypoint, cfg.Entrypoint) || !slices.Equal(cf.Config.Cmd, cfg.Cmd) ||
		!slices.Equal(cf.Config.Env, cfg.Env) || cf.Config.WorkingDir != cfg.WorkingDir {
		t.Errorf("config = %+v, want %+v", cf.Config, cfg)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want one", len(layers), err)
	}
	diffID, err := layers[0].DiffID()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.RootFS.DiffIDs) != 1 || cf.RootFS.DiffIDs[0] != diffID {
		t.Errorf("rootfs diff_ids = %v, want [%v]", cf.RootFS.DiffIDs, diffID)
	}

	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := readTar(t, rc)
	want := map[string]entry{
		"usr/":               {tar.TypeDir, 0o755, ""},
		"usr/local/":         {tar.TypeDir, 0o755, ""},
		"usr/local/bin/":     {tar.TypeDir, 0o755, ""},
		"usr/local/bin/weir": {tar.TypeReg, 0o755, "#!binary"},
		"etc/":               {tar.TypeDir, 0o755, ""},
		"etc/weir/":          {tar.TypeDir, 0o755, ""},
		"etc/weir/conf":      {tar.TypeReg, 0o600, "a=1\n"},
	}
	if len(got) != len(want) {
		t.Errorf("layer has %d entries, want %d: %v", len(got), len(want), got)
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("layer entry %s = %+v (present %v), want %+v", name, g, ok, w)
		}
	}
}

func TestWriteNamesTheImageInFamiliarFormForImport(t *testing.T) {
	for ref, want := range map[string]string{
		"weir:dev":                     "weir:dev",
		"docker.io/library/weir:dev":   "weir:dev",
		"registry.k8s.io/pause:3.10.2": "registry.k8s.io/pause:3.10.2",
		"weir":                         "weir:latest",
	} {
		out := filepath.Join(t.TempDir(), "img.tar")
		if err := Write(out, []string{ref}, []File{{Path: "/pause", Data: []byte("x"), Mode: 0o755}}, Config{}); err != nil {
			t.Fatalf("Write %s: %v", ref, err)
		}
		var m tarball.Manifest
		if err := json.Unmarshal(archiveFile(t, out, "manifest.json"), &m); err != nil {
			t.Fatal(err)
		}
		if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{want}) {
			t.Errorf("Write(%q) manifest.json = %+v, want RepoTags [%q]", ref, m, want)
		}
	}
}

func TestWriteNamesTheImageByEveryRef(t *testing.T) {
	out := filepath.Join(t.TempDir(), "img.tar")
	refs := []string{"registry.k8s.io/e2e-test-images/agnhost:2.66.1", "registry.k8s.io/e2e-test-images/agnhost:2.45"}
	if err := Write(out, refs, []File{{Path: "/agnhost", Data: []byte("x"), Mode: 0o755}}, Config{}); err != nil {
		t.Fatal(err)
	}
	var m tarball.Manifest
	if err := json.Unmarshal(archiveFile(t, out, "manifest.json"), &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !slices.Equal(m[0].RepoTags, refs) {
		t.Errorf("manifest.json = %+v, want one image named %v", m, refs)
	}
	if err := Write(out, nil, nil, Config{}); err == nil {
		t.Error("Write with no name succeeded")
	}
}

func TestWriteIsReproducible(t *testing.T) {
	dir := t.TempDir()
	files := []File{{Path: "/a/b", Data: []byte("b")}, {Path: "/a/c", Data: []byte("c")}}
	var archives [2][]byte
	for i := range archives {
		out := filepath.Join(dir, "img.tar")
		if err := Write(out, []string{"weir:dev"}, files, Config{Cmd: []string{"/a/b"}}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		archives[i] = b
	}
	if st, err := os.Stat(filepath.Join(dir, "img.tar")); err != nil || st.Mode() != 0o644 {
		t.Errorf("archive stat = %v, %v; want mode 0644", st.Mode(), err)
	}
	if !bytes.Equal(archives[0], archives[1]) {
		t.Error("two writes of the same image differ")
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, ".img.tar.*")); len(matches) != 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}
}

func TestWriteRefusesBadInputAndLeavesNoArchive(t *testing.T) {
	tests := []struct {
		name  string
		ref   string
		files []File
	}{
		{"relative path", "weir:dev", []File{{Path: "bin/weir"}}},
		{"unclean path", "weir:dev", []File{{Path: "/bin/../weir"}}},
		{"same path twice", "weir:dev", []File{{Path: "/weir"}, {Path: "/weir"}}},
		{"file where a directory is needed", "weir:dev", []File{{Path: "/bin"}, {Path: "/bin/weir"}}},
		{"src and data both", "weir:dev", []File{{Path: "/weir", Src: "/etc/hostname", Data: []byte("x")}}},
		{"missing src", "weir:dev", []File{{Path: "/weir", Src: "/nonexistent/weir"}}},
		{"digest reference", "weir@sha256:0000000000000000000000000000000000000000000000000000000000000000", nil},
		{"upper-case repository", "Weir:dev", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Write(filepath.Join(dir, "img.tar"), []string{tt.ref}, tt.files, Config{}); err == nil {
				t.Fatal("Write succeeded")
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

func TestWriteReportsAMissingSourceAsNotExist(t *testing.T) {
	err := Write(filepath.Join(t.TempDir(), "img.tar"), []string{"weir:dev"}, []File{{Path: "/weir", Src: "/nonexistent/weir"}}, Config{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Write = %v, want an fs.ErrNotExist", err)
	}
}

// readTar returns every entry of a tar stream by name.
func readTar(t *testing.T, r io.Reader) map[string]entry {
	t.Helper()
	got := map[string]entry{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got[hdr.Name] = entry{hdr.Typeflag, hdr.Mode, string(data)}
	}
}

// archiveFile returns the contents of one file of a docker-archive.
func archiveFile(t *testing.T, archive, name string) []byte {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s in %s: %v", name, archive, err)
		}
		if hdr.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

func TestLinksAreSymlinkEntries(t *testing.T) {
	data, err := layerTar([]File{
		{Path: "/bin/busybox", Data: []byte("bb"), Mode: 0o755},
		{Path: "/bin/sh", Link: "busybox"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	found := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "bin/sh" {
			found = true
			if h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
				t.Errorf("bin/sh: type %c -> %q, want a symlink to busybox", h.Typeflag, h.Linkname)
			}
		}
	}
	if !found {
		t.Fatal("no bin/sh entry")
	}
	if _, err := layerTar([]File{{Path: "/bin/sh", Link: "busybox", Data: []byte("x")}}); err == nil {
		t.Error("a link with contents must be refused")
	}
}
