// Command weir-install is the init container of weir's DaemonSet: it copies
// the CNI plugin binary from its image into the node's CNI bin directory,
// atomically, since the image has no shell to run cp in. Its main only
// wires flags; install does the work.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	plugin := flag.String("plugin", "/usr/local/bin/weir", "the plugin binary to install")
	dir := flag.String("dir", "/host/opt/cni/bin", "the CNI bin directory to install into; created if missing")
	name := flag.String("name", "", "the installed file's name (default: the plugin's base name)")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "weir-install: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if *name == "" {
		*name = filepath.Base(*plugin)
	}
	dst, err := install(*plugin, *dir, *name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "weir-install: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "weir-install: installed %s as %s\n", *plugin, dst)
}
