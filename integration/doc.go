// Package integration holds the root network-namespace tests of weir (build
// tag integration): the built plugin binary is run inside a namespace that
// plays the node, through cnitool, libcni and direct exec. Shared kernel
// helpers live in internal/testkit.
package integration
