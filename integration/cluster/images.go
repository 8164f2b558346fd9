package cluster

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/weir-cni/weir/integration/cluster/image"
)

// The image names the upstream tests and the sandbox ask for, and weir's.
const (
	PauseImage   = "registry.k8s.io/pause:3.10.2"
	AgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
	WeirImage    = "weir:dev"
	// CoreDNSImage is the DNS add-on's image, built from CoreDNS's Go
	// module at that version.
	CoreDNSImage = "registry.k8s.io/coredns/coredns:v1.15.0"
	// ConformanceAgnhostImage is the agnhost the network-policy-api
	// conformance suite's pods ask for: the same image under a second name.
	ConformanceAgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.45"
)

// ImageSources are the local binaries the images are built from.
type ImageSources struct {
	// Pause is the pause binary (cmd/pause).
	Pause string
	// Agnhost is the e2e tests' agnhost, built from k8s.io/kubernetes.
	Agnhost string
	// WeirBin holds weir, weir-agent, weirctl and weir-install.
	WeirBin string
	// CoreDNS is the coredns binary (github.com/coredns/coredns).
	CoreDNS string
	// NoSCTP says the kernel has no SCTP: the agnhost image's /agnhost is
	// then agnhost.sh, which runs a porter serving only SCTP as pause.
	NoSCTP bool
}

// BuildImages writes the four images as docker-archive tarballs into dir
// and returns their paths. Nothing is pulled: every file comes from this
// machine. The agnhost image carries two names, the e2e suites' and the
// conformance suite's. agnhost's upstream image also carries a shell, curl
// and OpenBSD netcat, which the e2e suites exec in its containers; they
// are taken from this machine's Debian packages (busybox-static, dash,
// bash, curl, netcat-openbsd) with the shared libraries they load.
func BuildImages(dir string, src ImageSources) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("make %s: %w", dir, err)
	}
	var out []string
	write := func(name string, refs []string, files []image.File, cfg image.Config) error {
		p := filepath.Join(dir, name+".tar")
		if err := image.Write(p, refs, files, cfg); err != nil {
			return err
		}
		out = append(out, p)
		return nil
	}
	if err := write("pause", []string{PauseImage}, []image.File{{Path: "/pause", Src: src.Pause, Mode: 0o755}},
		image.Config{Entrypoint: []string{"/pause"}}); err != nil {
		return nil, err
	}
	var weir []image.File
	for _, b := range []string{"weir", "weir-agent", "weirctl", "weir-install"} {
		weir = append(weir, image.File{Path: "/usr/local/bin/" + b, Src: filepath.Join(src.WeirBin, b), Mode: 0o755})
	}
	if err := write("weir", []string{WeirImage}, weir, image.Config{
		Entrypoint: []string{"/usr/local/bin/weir-agent"},
		Env:        []string{"PATH=/usr/local/bin"},
	}); err != nil {
		return nil, err
	}
	if err := write("coredns", []string{CoreDNSImage}, []image.File{{Path: "/coredns", Src: src.CoreDNS, Mode: 0o755}},
		image.Config{Entrypoint: []string{"/coredns"}}); err != nil {
		return nil, err
	}
	userland, err := agnhostUserland()
	if err != nil {
		return nil, err
	}
	// Upstream's image runs `agnhost pause` when a container names no
	// command: the conformance suite's client containers rely on it.
	files := append(agnhostBinaries(src), userland...)
	if err := write("agnhost", []string{AgnhostImage, ConformanceAgnhostImage}, files, image.Config{
		Entrypoint: []string{"/agnhost"},
		Cmd:        []string{"pause"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}); err != nil {
		return nil, err
	}
	return out, nil
}

//go:embed agnhost.sh
var agnhostWrapper []byte

// agnhostReal is where the image keeps the real agnhost when /agnhost is
// agnhost.sh; its name stays agnhost, as ps shows it.
const agnhostReal = "/usr/lib/agnhost/agnhost"

// agnhostBinaries is /agnhost: the binary itself, or on a kernel without
// SCTP agnhost.sh in front of it.
func agnhostBinaries(src ImageSources) []image.File {
	if !src.NoSCTP {
		return []image.File{{Path: "/agnhost", Src: src.Agnhost, Mode: 0o755}}
	}
	return []image.File{
		{Path: "/agnhost", Data: agnhostWrapper, Mode: 0o755},
		{Path: agnhostReal, Src: src.Agnhost, Mode: 0o755},
	}
}

// agnhostUserland is busybox's applets in /bin, dash as /bin/sh, bash,
// curl and nc with their libraries.
func agnhostUserland() ([]image.File, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("agnhost image needs busybox (Debian busybox-static): %w", err)
	}
	if out, err := exec.Command("file", "-L", bb).Output(); err == nil && strings.Contains(string(out), "dynamically") {
		return nil, fmt.Errorf("%s is not static: install Debian's busybox-static", bb)
	}
	files := []image.File{{Path: "/bin/busybox", Src: bb, Mode: 0o755}}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	// busybox's own sh runs its applets before anything on PATH (so nc
	// would be busybox's, which lacks -u and -v): the shells are Debian's
	// dash and bash, as upstream's image has a real shell.
	own := map[string]bool{"busybox": true, "nc": true, "curl": true, "sh": true, "bash": true}
	for _, a := range strings.Fields(string(list)) {
		if !own[a] && !strings.Contains(a, "/") {
			files = append(files, image.File{Path: "/bin/" + a, Link: "busybox"})
		}
	}
	libs := map[string]bool{}
	for _, b := range []struct{ at, bin string }{
		{"/usr/bin/curl", "curl"}, {"/bin/nc", "nc.openbsd"}, {"/bin/sh", "dash"}, {"/bin/bash", "bash"},
	} {
		p, err := exec.LookPath(b.bin)
		if err != nil {
			return nil, fmt.Errorf("agnhost image needs %s (Debian curl, netcat-openbsd, dash, bash): %w", b.bin, err)
		}
		files = append(files, image.File{Path: b.at, Src: p, Mode: 0o755})
		deps, err := sharedLibs(p)
		if err != nil {
			return nil, err
		}
		for _, d := range deps {
			libs[d] = true
		}
	}
	var paths []string
	for l := range libs {
		paths = append(paths, l)
	}
	sort.Strings(paths)
	for _, l := range paths {
		real, err := filepath.EvalSymlinks(l)
		if err != nil {
			return nil, fmt.Errorf("library %s: %w", l, err)
		}
		files = append(files, image.File{Path: l, Src: real, Mode: 0o755})
	}
	return files, nil
}

var lddLine = regexp.MustCompile(`(?m)^\s*(?:\S+ => )?(/\S+) \(0x`)

// sharedLibs lists the libraries (and the loader) bin loads, by the paths
// ldd resolves them to.
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	for _, m := range lddLine.FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, m[1])
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s: no libraries found in %q", bin, out)
	}
	return libs, nil
}
