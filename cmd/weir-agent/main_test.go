package main

import (
	"math"
	"strings"
	"testing"

	"github.com/weir-cni/weir/controller"
)

// TestValidateFlags pins which flag values weir-agent accepts: NFLOG groups
// 0 (off) to 65535 and rates that fit the kernel's 32 bits, never wrapped,
// only the CNI versions the plugin speaks, and host interface prefixes the
// plugin accepts and the rules can quote as they are.
func TestValidateFlags(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name            string
		node, manifests string
		cniVersion      string
		ifPrefix        string
		group, rate     uint
		wantErr         string // "" for none
	}{
		{"defaults", "n1", "", controller.DefaultCNIVersion, "weir", 0, 10, ""},
		{"largest group and rate", "n1", dir, "1.0.0", "weir", math.MaxUint16, math.MaxUint32, ""},
		{"cni version 1.1.0 for STATUS and GC", "n1", "", "1.1.0", "weir", 0, 10, ""},
		{"cni version the plugin does not speak", "n1", "", "0.2.0", "weir", 0, 10, `--cni-version "0.2.0"`},
		{"empty cni version", "n1", "", "", "weir", 0, 10, `--cni-version ""`},
		{"group out of range", "n1", "", "1.0.0", "weir", math.MaxUint16 + 1, 10, "--log-denied-group 65536"},
		{"rate out of range", "n1", "", "1.0.0", "weir", 1, math.MaxUint32 + 1, "--log-denied-rate 4294967296"},
		{"no node", "", "", "1.0.0", "weir", 0, 10, "--node-name"},
		{"custom host interface prefix", "n1", "", "1.0.0", "cali.1", 0, 10, ""},
		{"host interface prefix too long", "n1", "", "1.0.0", "weirweir", 0, 10, "--host-interface-prefix"},
		{"host interface prefix that would need quoting", "n1", "", "1.0.0", `we"ir`, 0, 10, "--host-interface-prefix"},
		{"empty host interface prefix", "n1", "", "1.0.0", "", 0, 10, "--host-interface-prefix"},
		{"manifests not a directory", "n1", dir + "/missing", "1.0.0", "weir", 0, 10, "--manifests"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(tc.node, tc.manifests, tc.cniVersion, tc.ifPrefix, tc.group, tc.rate)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("validate = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("validate = %v, want an error about %q", err, tc.wantErr)
			}
		})
	}
}
