package main

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/weir-cni/weir/agentapi"
)

func TestRequestParsing(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want agentapi.Request
		bad  bool
	}{
		{"status", []string{"status"}, agentapi.Request{Op: agentapi.OpStatus}, false},
		{"explain defaults to tcp", []string{"explain", "ns/a", "10.0.0.1", "80"},
			agentapi.Request{Op: agentapi.OpExplain, Src: "ns/a", Dst: "10.0.0.1", Protocol: "TCP", Port: 80}, false},
		{"explain with protocol", []string{"explain", "a/b", "c/d", "udp/53"},
			agentapi.Request{Op: agentapi.OpExplain, Src: "a/b", Dst: "c/d", Protocol: "UDP", Port: 53}, false},
		{"port out of range", []string{"explain", "a/b", "c/d", "70000"}, agentapi.Request{}, true},
		{"missing args", []string{"explain", "a/b"}, agentapi.Request{}, true},
		{"unknown command", []string{"frobnicate"}, agentapi.Request{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := request(tc.args)
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v, bad = %v", err, tc.bad)
			}
			if !tc.bad && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNoAgentIsAClearError(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := run([]string{"--socket", t.TempDir() + "/none.sock", "status"}, &out, &errb); rc != 1 {
		t.Errorf("rc = %d", rc)
	}
	if !bytes.Contains(errb.Bytes(), []byte("not running")) {
		t.Errorf("stderr = %q", errb.String())
	}
}
