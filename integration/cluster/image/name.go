package image

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// dockerHub is the registry a reference without one names, as containerd
// spells it; go-containerregistry spells it index.docker.io.
const dockerHub = "docker.io"

// ImportName returns the name containerd's CRI finds the image under after
// `ctr -n k8s.io images import`: a reference without a registry gets
// docker.io, one without a path also library/, one without a tag :latest.
// "weir:dev" gives "docker.io/library/weir:dev". A reference Write would
// refuse (a digest, a bad name) is returned as it is.
func ImportName(ref string) string {
	reg, repo, tag, err := parseRef(ref)
	if err != nil {
		return ref
	}
	return reg + "/" + repo + ":" + tag
}

// repoTag returns the name written into the archive's manifest.json:
// the familiar form `docker save` writes ("weir:dev",
// "registry.k8s.io/pause:3.10.2"), which both docker and containerd expand
// back to ImportName(ref).
func repoTag(ref string) (string, error) {
	reg, repo, tag, err := parseRef(ref)
	if err != nil {
		return "", err
	}
	if reg != dockerHub {
		return reg + "/" + repo + ":" + tag, nil
	}
	return strings.TrimPrefix(repo, "library/") + ":" + tag, nil
}

// parseRef splits a tag reference into registry (docker.io for Docker
// Hub), repository (with library/ for official images) and tag.
func parseRef(ref string) (reg, repo, tag string, err error) {
	t, err := name.NewTag(ref)
	if err != nil {
		return "", "", "", fmt.Errorf("parse image reference %q: %w", ref, err)
	}
	reg = t.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = dockerHub
	}
	return reg, t.RepositoryStr(), t.TagStr(), nil
}
