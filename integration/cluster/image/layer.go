package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"time"
)

// File is one regular file of an image.
type File struct {
	// Path is the absolute path of the file inside the image.
	Path string
	// Src is a local file whose contents are copied; leave it empty to use
	// Data instead.
	Src string
	// Data is the literal contents when Src is empty.
	Data []byte
	// Mode holds the permission bits. Zero means Src's permission bits, or
	// 0644 for Data.
	Mode os.FileMode
	// Link, when set, makes the entry a symbolic link to Link (Src and
	// Data stay empty): busybox's applets, a library's soname.
	Link string
}

// epoch is the timestamp of every tar entry and of the image config, so
// the same files always give the same image.
var epoch = time.Unix(0, 0).UTC()

// layerTar returns an uncompressed tar holding files in the order given,
// each preceded by the parent directories (0755) not yet written.
func layerTar(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	isDir := map[string]bool{} // every entry written so far
	for _, f := range files {
		name, err := entryName(f.Path)
		if err != nil {
			return nil, err
		}
		if _, ok := isDir[name]; ok {
			return nil, fmt.Errorf("file %s: path given twice or also a directory", f.Path)
		}
		var data []byte
		var mode fs.FileMode
		if f.Link == "" {
			if data, mode, err = contents(f); err != nil {
				return nil, err
			}
		} else if f.Src != "" || f.Data != nil {
			return nil, fmt.Errorf("file %s: a link has no contents", f.Path)
		}
		for _, dir := range parents(name) {
			if wasDir, ok := isDir[dir]; ok {
				if !wasDir {
					return nil, fmt.Errorf("file %s: a parent is a file", f.Path)
				}
				continue
			}
			isDir[dir] = true
			hdr := &tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch}
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, fmt.Errorf("write directory %s: %w", dir, err)
			}
		}
		isDir[name] = false
		if f.Link != "" {
			hdr := &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: f.Link, Mode: 0o777, ModTime: epoch}
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, fmt.Errorf("write link %s: %w", f.Path, err)
			}
			continue
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(mode), Size: int64(len(data)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write file %s: %w", f.Path, err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("write file %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer: %w", err)
	}
	return buf.Bytes(), nil
}

// entryName turns an absolute image path into a tar entry name (no leading
// slash), refusing paths that are relative or not clean.
func entryName(p string) (string, error) {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return "", fmt.Errorf("file %q: path must be absolute and clean", p)
	}
	return p[1:], nil
}

// parents lists the directories above a tar entry name, outermost first:
// "usr/local/bin/weir" gives usr, usr/local, usr/local/bin.
func parents(name string) []string {
	var dirs []string
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		dirs = append([]string{dir}, dirs...)
	}
	return dirs
}

// contents returns a file's bytes and permission bits.
func contents(f File) ([]byte, fs.FileMode, error) {
	if f.Src == "" {
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		return f.Data, mode, nil
	}
	if f.Data != nil {
		return nil, 0, fmt.Errorf("file %s: both Src and Data given", f.Path)
	}
	st, err := os.Stat(f.Src)
	if err != nil {
		return nil, 0, fmt.Errorf("file %s: %w", f.Path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("file %s: source %s is not a regular file", f.Path, f.Src)
	}
	data, err := os.ReadFile(f.Src)
	if err != nil {
		return nil, 0, fmt.Errorf("file %s: %w", f.Path, err)
	}
	mode := f.Mode.Perm()
	if mode == 0 {
		mode = st.Mode().Perm()
	}
	return data, mode, nil
}
