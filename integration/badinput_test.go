//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/internal/textdiff"
)

// Codes weir answers with. 1, 4, 6, 7, 8, 11 are the spec's; 100 is
// weir's own (the spec leaves 100+ to plugins).
const (
	codeIncompatibleVersion = 1
	codeInvalidEnv          = 4
	codeDecodingFailure     = 6
	codeInvalidConfig       = 7
	codeInvalidNetNS        = 8
	codeTryAgainLater       = 11
	codeAttachmentExists    = 100
)

// setup is what a bad-input case starts from: a node, a pod namespace and
// a valid single-range network.
type setup struct {
	n    *node
	pod  *testkit.NS
	base netConf
}

func TestBadInputFailsCleanly(t *testing.T) {
	tests := []struct {
		name string
		// prepare may wire pods first; it returns the call to make.
		prepare  func(t *testing.T, s setup) testkit.Call
		wantCode uint
		// wantMsg must all appear in msg + details, naming the problem.
		wantMsg []string
	}{
		{
			name: "malformed JSON is a decoding failure",
			prepare: func(t *testing.T, s setup) testkit.Call {
				return add(s, []byte(`{"cniVersion":"1.1.0","name":"weirnet","type":"weir",`))
			},
			wantCode: codeDecodingFailure, wantMsg: []string{"unexpected end of JSON"},
		},
		{
			name:     "unknown cniVersion is incompatible",
			prepare:  withConf(func(c *netConf) { c.Version = "9.9.9" }),
			wantCode: codeIncompatibleVersion, wantMsg: []string{"9.9.9"},
		},
		{
			name:     "cniVersion 0.2.0 is not supported",
			prepare:  withConf(func(c *netConf) { c.Version = "0.2.0" }),
			wantCode: codeIncompatibleVersion, wantMsg: []string{"0.2.0"},
		},
		{
			name:     "subnet that is not a CIDR",
			prepare:  withConf(func(c *netConf) { c.Ranges = subnets("10.244.1.0/33") }),
			wantCode: codeInvalidConfig, wantMsg: []string{"ipam.ranges[0].subnet", "10.244.1.0/33"},
		},
		{
			name:     "subnet with host bits set",
			prepare:  withConf(func(c *netConf) { c.Ranges = subnets("10.244.1.5/24") }),
			wantCode: codeInvalidConfig, wantMsg: []string{"ipam.ranges[0].subnet", "10.244.1.0/24"},
		},
		{
			name:     "overlapping ranges",
			prepare:  withConf(func(c *netConf) { c.Ranges = subnets("10.244.0.0/16", "10.244.1.0/24") }),
			wantCode: codeInvalidConfig, wantMsg: []string{"ipam.ranges[1]", "overlaps"},
		},
		{
			name: "rangeStart outside its subnet",
			prepare: withConf(func(c *netConf) {
				c.Ranges = []map[string]string{{"subnet": "10.244.1.0/24", "rangeStart": "10.244.2.10"}}
			}),
			wantCode: codeInvalidConfig, wantMsg: []string{"ipam.ranges[0].rangeStart", "10.244.2.10"},
		},
		{
			name:     "rangeStart that is not an address",
			prepare:  withConf(func(c *netConf) { c.Ranges = []map[string]string{{"subnet": "10.244.1.0/24", "rangeStart": "ten"}} }),
			wantCode: codeInvalidConfig, wantMsg: []string{"ipam.ranges[0].rangeStart", "ten"},
		},
		{
			name:     "requested IP outside every range",
			prepare:  withCall(func(c *testkit.Call) { c.Args = "IP=10.9.9.9" }),
			wantCode: codeInvalidConfig, wantMsg: []string{"10.9.9.9"},
		},
		{
			name: "exhausted range",
			prepare: func(t *testing.T, s setup) testkit.Call {
				c := s.base
				c.Ranges = subnets("10.250.0.0/30")
				for _, id := range []string{"fill-1", "fill-2"} {
					addPod(t, s.n, c, id)
				}
				return add(s, c.single())
			},
			wantCode: codeTryAgainLater, wantMsg: []string{"10.250.0.0/30"},
		},
		{
			name: "requested IP already in use",
			prepare: func(t *testing.T, s setup) testkit.Call {
				_, ips := addPod(t, s.n, s.base, "holder")
				call := add(s, s.base.single())
				call.Args = "IP=" + ips[0].String()
				return call
			},
			wantCode: codeTryAgainLater, wantMsg: []string{"in use"},
		},
		{
			name:     "missing CNI_NETNS",
			prepare:  withCall(func(c *testkit.Call) { c.Omit = []string{"CNI_NETNS"} }),
			wantCode: codeInvalidEnv, wantMsg: []string{"CNI_NETNS"},
		},
		{
			name:     "netns path that does not exist",
			prepare:  withCall(func(c *testkit.Call) { c.Netns = "/var/run/netns/weirt-does-not-exist" }),
			wantCode: codeInvalidNetNS, wantMsg: []string{"/var/run/netns/weirt-does-not-exist"},
		},
		{
			name: "netns path that is not a namespace",
			prepare: func(t *testing.T, s setup) testkit.Call {
				f := filepath.Join(t.TempDir(), "plain-file")
				if err := os.WriteFile(f, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				call := add(s, s.base.single())
				call.Netns = f
				return call
			},
			wantCode: codeInvalidNetNS, wantMsg: []string{"plain-file"},
		},
		{
			name:     "netns path that is a mount namespace",
			prepare:  withCall(func(c *testkit.Call) { c.Netns = "/proc/self/ns/mnt" }),
			wantCode: codeInvalidNetNS, wantMsg: []string{"/proc/self/ns/mnt", "not a network namespace"},
		},
		{
			name:     "netns path that is a procfs file but no namespace",
			prepare:  withCall(func(c *testkit.Call) { c.Netns = "/proc/self/status" }),
			wantCode: codeInvalidNetNS, wantMsg: []string{"/proc/self/status", "not a network namespace"},
		},
		{
			name:     "missing CNI_CONTAINERID",
			prepare:  withCall(func(c *testkit.Call) { c.Omit = []string{"CNI_CONTAINERID"} }),
			wantCode: codeInvalidEnv, wantMsg: []string{"CNI_CONTAINERID"},
		},
		{
			name:     "missing CNI_IFNAME",
			prepare:  withCall(func(c *testkit.Call) { c.Omit = []string{"CNI_IFNAME"} }),
			wantCode: codeInvalidEnv, wantMsg: []string{"CNI_IFNAME"},
		},
		{
			name:     "CNI_ARGS entry without a value",
			prepare:  withCall(func(c *testkit.Call) { c.Args = "K8S_POD_NAME" }),
			wantCode: codeInvalidEnv, wantMsg: []string{"CNI_ARGS", "K8S_POD_NAME"},
		},
		{
			name: "duplicate ADD of a wired attachment",
			prepare: func(t *testing.T, s setup) testkit.Call {
				first := add(s, s.base.single())
				mustOK(t, "first add", s.n.exec(first))
				return first
			},
			wantCode: codeAttachmentExists, wantMsg: []string{"ctr-bad", "eth0"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			s := setup{n: n, pod: testkit.NewTestNS(t, "weirt-p-"), base: n.conf("weirnet")}
			call := tc.prepare(t, s)
			storeBefore, linksBefore := n.allocated("weirnet"), n.links()
			podBefore, err := testkit.Links(s.pod)
			if err != nil {
				t.Fatal(err)
			}

			o := n.exec(call)
			if o.Err == nil {
				t.Fatalf("ADD succeeded (exit %d, stdout %s), want CNI error code %d", o.ExitCode, o.Stdout, tc.wantCode)
			}
			t.Logf("code %d msg %q details %q", o.Err.Code, o.Err.Msg, o.Err.Details)
			if o.Err.Code != tc.wantCode {
				t.Errorf("code = %d (%s: %s), want %d", o.Err.Code, o.Err.Msg, o.Err.Details, tc.wantCode)
			}
			text := o.Err.Msg + " " + o.Err.Details
			textdiff.Mentions(t, "error", text, tc.wantMsg...)
			if got := n.allocated("weirnet"); !slices.Equal(got, storeBefore) {
				t.Errorf("store changed: before %v, after %v", storeBefore, got)
			}
			if got := n.links(); !slices.Equal(got, linksBefore) {
				t.Errorf("node links changed:\nbefore %v\nafter  %v", linksBefore, got)
			}
			if got, _ := testkit.Links(s.pod); !slices.Equal(got, podBefore) {
				t.Errorf("pod links changed:\nbefore %v\nafter  %v", podBefore, got)
			}
		})
	}
}

// withConf prepares an ADD of the base network changed by edit.
func withConf(edit func(*netConf)) func(*testing.T, setup) testkit.Call {
	return func(_ *testing.T, s setup) testkit.Call {
		c := s.base
		edit(&c)
		return add(s, c.single())
	}
}

// withCall prepares an ADD of the base network, the call changed by edit.
func withCall(edit func(*testkit.Call)) func(*testing.T, setup) testkit.Call {
	return func(_ *testing.T, s setup) testkit.Call {
		call := add(s, s.base.single())
		edit(&call)
		return call
	}
}

// add is an ADD of container "ctr-bad" into the case's pod.
func add(s setup, conf []byte) testkit.Call {
	return testkit.Call{Command: "ADD", ContainerID: "ctr-bad", Netns: s.pod.Path(), Conf: conf}
}

func TestDelIsIdempotent(t *testing.T) {
	n := newNode(t)
	c := n.conf("weirnet")
	pod, _ := addPod(t, n, c, "ctr-del")
	for _, tc := range []struct {
		name string
		call testkit.Call
	}{
		{"unknown container", testkit.Call{Command: "DEL", ContainerID: "never-added", Netns: pod.Path(), Conf: c.single()}},
		{"netns that no longer exists", testkit.Call{Command: "DEL", ContainerID: "ctr-del", Netns: "/var/run/netns/weirt-gone", Conf: c.single()}},
		{"already deleted", testkit.Call{Command: "DEL", ContainerID: "ctr-del", Netns: pod.Path(), Conf: c.single()}},
		{"without CNI_NETNS", testkit.Call{Command: "DEL", ContainerID: "ctr-del", Conf: c.single()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustOK(t, "del", n.exec(tc.call))
		})
	}
	checkReleased(t, n, c.Name, pod, "DELs")
}
