package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAgnhostWrapperRunsAnSCTPOnlyPorterAsPause runs agnhost.sh with a
// stand-in for the real agnhost that prints the arguments it got: only a
// porter whose every SERVE_* variable is an SCTP one becomes pause.
func TestAgnhostWrapperRunsAnSCTPOnlyPorterAsPause(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "agnhost")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"$*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := strings.Replace(string(agnhostWrapper), "real="+agnhostReal+"\n", "real="+fake+"\n", 1)
	if script == string(agnhostWrapper) {
		t.Fatalf("agnhost.sh does not set real=%s", agnhostReal)
	}
	wrapper := filepath.Join(dir, "wrapper")
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"SCTP only", []string{"porter"}, []string{"SERVE_SCTP_PORT_9003=foo"}, "pause"},
		{"two SCTP ports", []string{"porter"}, []string{"SERVE_SCTP_PORT_9003=foo", "SERVE_SCTP_PORT_9005=foo"}, "pause"},
		{"SCTP and TCP", []string{"porter"}, []string{"SERVE_SCTP_PORT_9003=foo", "SERVE_PORT_9001=foo"}, "porter"},
		{"SCTP and UDP", []string{"porter"}, []string{"SERVE_UDP_PORT_9004=foo", "SERVE_SCTP_PORT_9003=foo"}, "porter"},
		{"TCP only", []string{"porter"}, []string{"SERVE_TCP_PORT_9001=foo"}, "porter"},
		{"no SERVE_ variable", []string{"porter"}, nil, "porter"},
		{"porter flags kept", []string{"porter", "--json-response"}, []string{"SERVE_PORT_9001=foo"}, "porter --json-response"},
		{"not porter", []string{"serve-hostname", "--udp", "--port", "5353"}, []string{"SERVE_SCTP_PORT_9003=foo"}, "serve-hostname --udp --port 5353"},
		{"argument with spaces", []string{"netexec", "--http-port=8080", "a b"}, nil, "netexec --http-port=8080 a b"},
		{"no arguments", nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(wrapper, tt.args...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tt.env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s %v: %v: %s", wrapper, tt.args, err, out)
			}
			if got := strings.TrimSuffix(string(out), "\n"); got != tt.want {
				t.Errorf("agnhost %v with %v ran agnhost %q, want %q", tt.args, tt.env, got, tt.want)
			}
		})
	}
}

func TestAgnhostImageHasTheWrapperOnlyWithoutSCTP(t *testing.T) {
	with := agnhostBinaries(ImageSources{Agnhost: "/cache/agnhost"})
	if len(with) != 1 || with[0].Path != "/agnhost" || with[0].Src != "/cache/agnhost" {
		t.Errorf("with SCTP /agnhost must be agnhost itself: %+v", with)
	}
	without := agnhostBinaries(ImageSources{Agnhost: "/cache/agnhost", NoSCTP: true})
	if len(without) != 2 || without[0].Path != "/agnhost" || string(without[0].Data) != string(agnhostWrapper) ||
		without[1].Path != agnhostReal || without[1].Src != "/cache/agnhost" {
		t.Errorf("without SCTP /agnhost must be agnhost.sh in front of %s: %+v", agnhostReal, without)
	}
	if filepath.Base(agnhostReal) != "agnhost" {
		t.Errorf("the real binary %s must keep the name agnhost", agnhostReal)
	}
}
