// Package examples holds NetworkPolicy manifests shared by the demo and the
// tests; it is pure data.
package examples

import _ "embed"

// TalkPolicies are the two policies of the talk weir started from, verbatim:
// web-allow-prod and test-network-policy.
//
//go:embed talk-policies.yaml
var TalkPolicies string
