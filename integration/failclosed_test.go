//go:build integration

package integration

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/internal/textdiff"
)

// withoutAgent is a network whose plugin would ask an agent at a socket
// nobody listens on; Extra's nil values leave the test harness's fail-open
// opt-in out, so the plugin's own default decides.
func withoutAgent(t *testing.T, n *node, extra map[string]any) netConf {
	c := n.conf("weirnet")
	c.Extra = map[string]any{"failClosed": nil, "agentWait": nil,
		"agentSocket": filepath.Join(t.TempDir(), "run", "agent.sock")}
	for k, v := range extra {
		c.Extra[k] = v
	}
	return c
}

func TestAgentAbsentFailsClosedByDefault(t *testing.T) {
	n := newNode(t)
	pod := testkit.NewTestNS(t, "weirt-p-")
	c := withoutAgent(t, n, nil)
	var plugin map[string]any
	_ = json.Unmarshal(c.single(), &plugin)
	if _, ok := plugin["failClosed"]; ok {
		t.Fatalf("config %s sets failClosed; this test is about the default", c.single())
	}
	storeBefore, linksBefore := n.allocated("weirnet"), n.links()

	add := testkit.Call{Command: "ADD", ContainerID: "ctr-fc", Netns: pod.Path(), Conf: c.single(),
		Args: "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web"}
	o := n.exec(add)
	if o.Err == nil {
		t.Fatalf("ADD without an agent succeeded (stdout %s); want CNI error %d", o.Stdout, codeTryAgainLater)
	}
	if o.Err.Code != codeTryAgainLater || o.ExitCode == 0 {
		t.Errorf("ADD: exit %d, code %d (%s: %s); want code %d", o.ExitCode, o.Err.Code, o.Err.Msg, o.Err.Details, codeTryAgainLater)
	}
	text := o.Err.Msg + " " + o.Err.Details
	textdiff.Mentions(t, "error", text, "fail-closed", "not running", `"failClosed": false`)
	check := func(when string) {
		t.Helper()
		if got := n.allocated("weirnet"); !slices.Equal(got, storeBefore) {
			t.Errorf("%s: addresses %v, want %v", when, got, storeBefore)
		}
		if got := n.links(); !slices.Equal(got, linksBefore) {
			t.Errorf("%s: node links %v, want %v", when, got, linksBefore)
		}
		if got, err := testkit.Links(pod); err != nil || slices.Contains(got, "eth0") {
			t.Errorf("%s: pod links %v (%v), want no eth0", when, got, err)
		}
	}
	check("after the failed ADD")

	del := add
	del.Command = "DEL"
	mustOK(t, "DEL after the failed ADD", n.exec(del))
	check("after DEL")
}

func TestFailOpenOptInLogsEveryFallback(t *testing.T) {
	n := newNode(t)
	pod := testkit.NewTestNS(t, "weirt-p-")
	c := withoutAgent(t, n, map[string]any{"failClosed": false})
	o := n.exec(testkit.Call{Command: "ADD", ContainerID: "ctr-fo", Netns: pod.Path(), Conf: c.single(),
		Args: "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web"})
	mustOK(t, "fail-open ADD without an agent", o)
	if len(n.allocated("weirnet")) != 1 || len(n.weirLinks()) != 1 {
		t.Errorf("pod not wired: addresses %v, links %v", n.allocated("weirnet"), n.weirLinks())
	}
	log := string(o.Stderr)
	textdiff.Mentions(t, "stderr", log, "level=WARN", "without the agent's confirmation", "pod=ns1/web", "containerID=ctr-fo", "not running")
}
