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
		metricsAuth     string
		ifPrefix        string
		group, rate     uint
		wantErr         string // "" for none
	}{
		{"defaults", "n1", "", controller.DefaultCNIVersion, "none", "weir", 0, 10, ""},
		{"largest group and rate", "n1", dir, "1.0.0", "none", "weir", math.MaxUint16, math.MaxUint32, ""},
		{"cni version 1.1.0 for STATUS and GC", "n1", "", "1.1.0", "none", "weir", 0, 10, ""},
		{"cni version the plugin does not speak", "n1", "", "0.2.0", "none", "weir", 0, 10, `--cni-version "0.2.0"`},
		{"empty cni version", "n1", "", "", "none", "weir", 0, 10, `--cni-version ""`},
		{"group out of range", "n1", "", "1.0.0", "none", "weir", math.MaxUint16 + 1, 10, "--log-denied-group 65536"},
		{"rate out of range", "n1", "", "1.0.0", "none", "weir", 1, math.MaxUint32 + 1, "--log-denied-rate 4294967296"},
		{"no node", "", "", "1.0.0", "none", "weir", 0, 10, "--node-name"},
		{"manifests not a directory", "n1", dir + "/missing", "1.0.0", "none", "weir", 0, 10, "--manifests"},
		{"metrics auth by the API server", "n1", "", "1.0.0", "kube", "weir", 0, 10, ""},
		{"metrics auth without an API server", "n1", dir, "1.0.0", "kube", "weir", 0, 10, "--metrics-auth=kube needs an API server"},
		{"unknown metrics auth", "n1", "", "1.0.0", "basic", "weir", 0, 10, `--metrics-auth "basic"`},
		{"custom host interface prefix", "n1", "", "1.0.0", "none", "cali.1", 0, 10, ""},
		{"host interface prefix too long", "n1", "", "1.0.0", "none", "weirweir", 0, 10, "--host-interface-prefix"},
		{"host interface prefix that would need quoting", "n1", "", "1.0.0", "none", `we"ir`, 0, 10, "--host-interface-prefix"},
		{"empty host interface prefix", "n1", "", "1.0.0", "none", "", 0, 10, "--host-interface-prefix"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(tc.node, tc.manifests, tc.cniVersion, tc.metricsAuth, tc.ifPrefix, tc.group, tc.rate)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("validate = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("validate = %v, want an error about %q", err, tc.wantErr)
			}
		})
	}
}

// TestCheckPassMark pins what --tier-pass-mark accepts: exactly one bit
// of a 32-bit mark.
func TestCheckPassMark(t *testing.T) {
	for m, ok := range map[uint]bool{0x00800000: true, 1: true, 1 << 31: true, 0: false, 3: false, 0x00800001: false, 1 << 32: false} {
		if err := checkMark("--tier-pass-mark", m); (err == nil) != ok {
			t.Errorf("checkMark(%#x) = %v, want ok=%v", m, err, ok)
		}
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9765": true, "[::1]:9765": true, "localhost:9765": true,
		":9765": false, "0.0.0.0:9765": false, "10.0.0.1:9765": false, "[::]:9765": false, "garbage": false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestLeaseNamespaceDefault: the Lease lives in the agent's own namespace
// ($POD_NAMESPACE, from the downward API), else in kube-system.
func TestLeaseNamespaceDefault(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "")
	if got := envOr("POD_NAMESPACE", "kube-system"); got != "kube-system" {
		t.Errorf("without POD_NAMESPACE: %q, want kube-system", got)
	}
	t.Setenv("POD_NAMESPACE", "weir")
	if got := envOr("POD_NAMESPACE", "kube-system"); got != "weir" {
		t.Errorf("with POD_NAMESPACE=weir: %q, want weir", got)
	}
}
