package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// install copies the file src to dir/name, mode 0755, and returns that
// path. It creates dir if missing and replaces an existing file, so it can
// run again at every start. The copy is written to a temporary file in dir,
// synced and renamed over dir/name, so the container runtime never execs
// half a plugin; on failure no temporary file is left behind.
func install(src, dir, name string) (dst string, err error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return "", fmt.Errorf("install %s: bad file name %q", src, name)
	}
	dst = filepath.Join(dir, name)
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("install %s: %w", src, err)
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil {
		return "", fmt.Errorf("install %s: %w", src, err)
	} else if !st.Mode().IsRegular() {
		return "", fmt.Errorf("install %s: not a regular file", src)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("install %s: %w", src, err)
	}

	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("install %s: %w", src, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, in); err != nil {
		return "", fmt.Errorf("install %s: copy to %s: %w", src, tmp.Name(), err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		return "", fmt.Errorf("install %s: %w", src, err)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("install %s: %w", src, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("install %s: %w", src, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("install %s: %w", src, err)
	}
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("install %s: sync %s: %w", src, dir, err)
	}
	return dst, nil
}

// syncDir flushes a directory's entries to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
