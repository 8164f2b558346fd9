package main

import (
	"math"
	"strings"
	"testing"
)

// TestValidateFlags pins which flag values weir-agent accepts: NFLOG groups
// 0 (off) to 65535 and rates that fit the kernel's 32 bits, never wrapped.
func TestValidateFlags(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name            string
		node, manifests string
		group, rate     uint
		wantErr         string // "" for none
	}{
		{"defaults", "n1", "", 0, 10, ""},
		{"largest group and rate", "n1", dir, math.MaxUint16, math.MaxUint32, ""},
		{"group out of range", "n1", "", math.MaxUint16 + 1, 10, "--log-denied-group 65536"},
		{"rate out of range", "n1", "", 1, math.MaxUint32 + 1, "--log-denied-rate 4294967296"},
		{"no node", "", "", 0, 10, "--node-name"},
		{"manifests not a directory", "n1", dir + "/missing", 0, 10, "--manifests"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(tc.node, tc.manifests, tc.group, tc.rate)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("validate = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("validate = %v, want an error about %q", err, tc.wantErr)
			}
		})
	}
}
