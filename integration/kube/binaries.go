package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Versions of the binaries the harness runs; hack/build-k8s.sh builds the
// same ones (keep them in step).
const (
	EtcdVersion       = "v3.7.3"
	KubernetesVersion = "v1.37.2"
)

// ErrNoBinaries is returned (wrapped) when etcd or kube-apiserver is not in
// the cache and building was not asked for.
var ErrNoBinaries = errors.New("etcd/kube-apiserver binaries missing: run hack/build-k8s.sh")

// Binaries are the executables a cluster runs.
type Binaries struct {
	Etcd, APIServer string
}

// CacheDir is where hack/build-k8s.sh caches binaries:
// $WEIR_CACHE, else $HOME/.cache/weir.
func CacheDir() string {
	if d := os.Getenv("WEIR_CACHE"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "weir")
	}
	return filepath.Join(os.TempDir(), "weir-cache")
}

// FindBinaries returns the cached binaries ($WEIR_ETCD and
// $WEIR_KUBE_APISERVER override each path). When one is missing and build
// is true it runs hack/build-k8s.sh (slow the first time on a machine);
// otherwise the error wraps ErrNoBinaries.
func FindBinaries(ctx context.Context, build bool) (Binaries, error) {
	b := Binaries{
		Etcd:      envOr("WEIR_ETCD", filepath.Join(CacheDir(), "bin", "etcd-"+EtcdVersion)),
		APIServer: envOr("WEIR_KUBE_APISERVER", filepath.Join(CacheDir(), "bin", "kube-apiserver-"+KubernetesVersion)),
	}
	missing := b.missing()
	if missing == "" {
		return b, nil
	}
	if !build {
		return b, fmt.Errorf("%w (%s not found)", ErrNoBinaries, missing)
	}
	script, err := buildScript()
	if err != nil {
		return b, err
	}
	cmd := exec.CommandContext(ctx, "sh", script)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return b, fmt.Errorf("run %s: %w", script, err)
	}
	if missing := b.missing(); missing != "" {
		return b, fmt.Errorf("%w (%s still not found after %s)", ErrNoBinaries, missing, script)
	}
	return b, nil
}

func (b Binaries) missing() string {
	for _, p := range []string{b.Etcd, b.APIServer} {
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return p
		}
	}
	return ""
}

// buildScript locates hack/build-k8s.sh from this source file's path, so it
// works from any test's working directory inside the repository.
func buildScript() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate hack/build-k8s.sh: no caller information")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "hack", "build-k8s.sh")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("locate hack/build-k8s.sh: %w", err)
	}
	return p, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
