package testkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
)

// GoBuild builds the main package pkg (an import path of this module, such
// as github.com/weir-cni/weir/cmd/weir) into out the way `make build` does:
// static, CGO_ENABLED=0. The go command is the one on PATH, else this Go
// installation's.
func GoBuild(ctx context.Context, pkg, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// RootContext starts a command that builds namespaces (a benchmark, the
// demo). Unless it runs as root, it says so on stderr, prefixed with
// name, and returns ok false; else a context cancelled on Ctrl-C or
// SIGTERM.
func RootContext(name string) (ctx context.Context, stop context.CancelFunc, ok bool) {
	if os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "%s: run as root (it creates network namespaces)\n", name)
		return nil, nil, false
	}
	ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	return ctx, stop, true
}
