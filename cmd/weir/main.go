// Command weir is the weir CNI plugin. Its main only wires the CNI entry
// points; everything else lives in package plugin.
package main

import (
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/weir-cni/weir/conf"
	"github.com/weir-cni/weir/plugin"
)

func init() {
	// Netlink handles bound to other namespaces are safe on any thread, but
	// the plugin keeps the main goroutine on one OS thread as every CNI
	// plugin does, so nothing ever runs in an unexpected namespace.
	runtime.LockOSThread()
}

func main() {
	skel.PluginMainFuncs(plugin.Funcs(), conf.PluginInfo, "weir CNI plugin (routed veth, in-process IPAM)")
}
