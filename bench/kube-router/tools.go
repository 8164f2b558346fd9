//go:build tools

// Package kuberouter pins kube-router, built only as a benchmark peer for
// cmd/bench-api-to-kernel -peer: it is never shipped nor linked into weir.
package kuberouter

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
