package image

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// writeArchive writes img as a docker-archive whose manifest.json names it
// by each of repoTags. go-containerregistry's tarball.Write would spell a Docker Hub
// name index.docker.io/library/NAME:TAG; this writes the familiar form
// `docker save` writes instead.
func writeArchive(path string, repoTags []string, img v1.Image) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := writeTar(tmp, repoTags, img); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil { // CreateTemp makes it 0600
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// writeTar writes the config, the layers and manifest.json, in that order.
func writeTar(w io.Writer, repoTags []string, img v1.Image) error {
	tw := tar.NewWriter(w)
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("config digest: %w", err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	desc := tarball.Descriptor{Config: cfgName.Hex + ".json", RepoTags: repoTags}
	if err := writeEntry(tw, desc.Config, cfg); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	for _, l := range layers {
		name, err := writeLayer(tw, l)
		if err != nil {
			return err
		}
		desc.Layers = append(desc.Layers, name)
	}
	manifest, err := json.Marshal(tarball.Manifest{desc})
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if err := writeEntry(tw, "manifest.json", manifest); err != nil {
		return err
	}
	return tw.Close()
}

// writeLayer writes a layer's compressed blob as DIGEST.tar.gz and returns
// that name.
func writeLayer(tw *tar.Writer, l v1.Layer) (string, error) {
	digest, err := l.Digest()
	if err != nil {
		return "", fmt.Errorf("layer digest: %w", err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", digest, err)
	}
	defer rc.Close()
	blob, err := io.ReadAll(rc)
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", digest, err)
	}
	name := digest.Hex + ".tar.gz"
	return name, writeEntry(tw, name, blob)
}

// writeEntry writes one regular 0644 file into the archive.
func writeEntry(tw *tar.Writer, name string, data []byte) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	return nil
}
