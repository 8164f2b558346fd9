package image

import (
	"bytes"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Config is the part of the image config a container starts from.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string // "KEY=value"
	WorkingDir string
}

// Write writes to path a docker-archive holding one linux/amd64 image
// named by every one of refs ("weir:dev", "registry.k8s.io/pause:3.10.2";
// an import creates each name, all sharing the image) with a single layer
// of files; parent directories are created 0755. The same arguments always
// give the same bytes. The archive is written to a temporary file next to
// path and renamed, so path never holds half an image.
func Write(path string, refs []string, files []File, cfg Config) error {
	if len(refs) == 0 {
		return fmt.Errorf("write image %s: no name", path)
	}
	tags := make([]string, len(refs))
	for i, ref := range refs {
		tag, err := repoTag(ref)
		if err != nil {
			return err
		}
		tags[i] = tag
	}
	img, err := build(files, cfg)
	if err != nil {
		return fmt.Errorf("build image %s: %w", refs[0], err)
	}
	if err := writeArchive(path, tags, img); err != nil {
		return fmt.Errorf("write image %s: %w", refs[0], err)
	}
	return nil
}

// build assembles the image: a config naming os, architecture and cfg,
// and one gzip layer holding files.
func build(files []File, cfg Config) (v1.Image, error) {
	raw, err := layerTar(files)
	if err != nil {
		return nil, err
	}
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
	layer, err := tarball.LayerFromOpener(open, tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	created := v1.Time{Time: epoch}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      created,
		Config: v1.Config{
			Entrypoint: cfg.Entrypoint,
			Cmd:        cfg.Cmd,
			Env:        cfg.Env,
			WorkingDir: cfg.WorkingDir,
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: created, CreatedBy: "weir integration/cluster/image"},
	})
}
