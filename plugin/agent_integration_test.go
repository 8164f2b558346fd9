//go:build integration

package plugin

import (
	"bufio"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/internal/textdiff"
)

// fakeAgent answers pod-added requests with answer(req); each request is
// passed to seen first.
func fakeAgent(t *testing.T, seen func(agentapi.Request), answer func(agentapi.Request) *agentapi.Response) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var req agentapi.Request
			line, _ := bufio.NewReader(c).ReadBytes('\n')
			_ = json.Unmarshal(line, &req)
			seen(req)
			if resp := answer(req); resp != nil {
				b, _ := json.Marshal(resp)
				_, _ = c.Write(append(b, '\n'))
				c.Close()
			}
			// nil answer: hold the connection open, as a hung agent would.
		}
	}()
	return sock
}

func TestAgentIsAskedBeforeThePodCanTalk(t *testing.T) {
	e := newEnv(t)
	hostName := HostVethName("weir", "ctr1", "eth0")
	var got agentapi.Request
	var hostUp, hostRoute = true, true
	sock := fakeAgent(t, func(r agentapi.Request) {
		got = r
		_ = e.inNode(func() error {
			l, err := netlink.LinkByName(hostName)
			if err != nil {
				t.Errorf("host veth missing while agent is asked: %v", err)
				return nil
			}
			hostUp = l.Attrs().Flags&net.FlagUp != 0
			rs, _ := netlink.RouteList(l, netlink.FAMILY_V4)
			hostRoute = len(rs) > 0
			return nil
		})
	}, func(agentapi.Request) *agentapi.Response { return &agentapi.Response{} })
	stdin := e.conf("1.1.0", `"agentSocket":"`+sock+`",`)
	res, err := e.tryAdd(stdin, "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web")
	if err != nil {
		t.Fatal(err)
	}
	if got.Op != agentapi.OpPodAdded || got.Namespace != "ns1" || got.Name != "web" || got.ContainerID != "ctr1" ||
		strings.Join(got.IPs, ",") != "10.77.0.1,fd00:77::1" {
		t.Errorf("agent got %+v", got)
	}
	if hostUp || hostRoute {
		t.Errorf("host end was up=%v / routed=%v before the agent answered", hostUp, hostRoute)
	}
	if res == nil {
		t.Fatal("no result")
	}
}

// TestFailClosedByDefault pins the default: whenever the agent does not
// confirm the pod, ADD fails with code 11 and leaves nothing behind.
func TestFailClosedByDefault(t *testing.T) {
	hang := func(agentapi.Request) *agentapi.Response { return nil }
	refuse := func(agentapi.Request) *agentapi.Response {
		return &agentapi.Response{Error: "pod ns1/web is unknown to the agent"}
	}
	cases := []struct {
		name  string
		sock  func(t *testing.T) string
		extra string
	}{
		{"agent absent", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none.sock") }, ``},
		{"agent hangs past agentWait", func(t *testing.T) string { return fakeAgent(t, func(agentapi.Request) {}, hang) }, `"agentWait":"200ms",`},
		{"agent does not know the pod", func(t *testing.T) string { return fakeAgent(t, func(agentapi.Request) {}, refuse) }, ``},
		{"agent hangs, failClosed set explicitly", func(t *testing.T) string { return fakeAgent(t, func(agentapi.Request) {}, hang) },
			`"agentWait":"200ms","failClosed":true,`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			stdin := e.conf("1.1.0", `"agentSocket":"`+tc.sock(t)+`",`+tc.extra)
			_, err := e.tryAdd(stdin, "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web")
			te, ok := err.(*types.Error)
			if !ok || te.Code != types.ErrTryAgainLater {
				t.Fatalf("ADD = %v, want code 11", err)
			}
			e.nothingLeft()
			if err := e.inNode(func() error { return cmdDel(e.args(stdin)) }); err != nil {
				t.Errorf("DEL after the failed ADD: %v", err)
			}
		})
	}
}

// nothingLeft fails the test if the attachment left an address, a host
// veth or a pod interface behind.
func (e *env) nothingLeft() {
	t := e.t
	t.Helper()
	e.nothingLeftOnNode()
	_ = e.pod.Do(func(ns.NetNS) error {
		if _, err := netlink.LinkByName("eth0"); err == nil {
			t.Error("pod eth0 leaked")
		}
		return nil
	})
}

// nothingLeftOnNode fails the test if the attachment left an address or
// a host veth behind.
func (e *env) nothingLeftOnNode() {
	t := e.t
	t.Helper()
	if r := e.reserved(); len(r) != 0 {
		t.Errorf("addresses leaked: %v", r)
	}
	_ = e.inNode(func() error {
		if _, err := netlink.LinkByName(HostVethName("weir", "ctr1", "eth0")); err == nil {
			t.Error("host veth leaked")
		}
		return nil
	})
}

func TestFailOpenOptInWiresThePodAndLogsTheFallback(t *testing.T) {
	cases := []struct{ name, extra, want string }{
		{"agent absent", `"agentSocket":"` + filepath.Join(t.TempDir(), "none.sock") + `",`, "weir-agent is not running"},
		{"agent not asked", `"agentWait":"0s",`, "agentWait is 0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			stdin := e.conf("1.1.0", tc.extra+`"failClosed":false,`)
			if _, err := e.tryAdd(stdin, "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web"); err != nil {
				t.Fatalf("fail-open ADD: %v", err)
			}
			log := e.log.String()
			textdiff.Mentions(t, "fallback log", log, "level=WARN", "without", "pod=ns1/web", "containerID=ctr1", tc.want)
		})
	}
}

func TestStatusNeedsTheAgentOnlyWhenFailClosed(t *testing.T) {
	e := newEnv(t)
	none := filepath.Join(t.TempDir(), "none.sock")
	status := func(extra string) error {
		stdin := e.conf("1.1.0", extra)
		return e.inNode(func() error { return cmdStatus(e.args(stdin)) })
	}
	if err := status(`"agentSocket":"` + none + `","failClosed":false,`); err != nil {
		t.Errorf("fail-open STATUS without agent: %v", err)
	}
	for _, extra := range []string{`"agentWait":"200ms",`, `"failClosed":true,"agentWait":"200ms",`} {
		err := status(`"agentSocket":"` + none + `",` + extra)
		if te, ok := err.(*types.Error); !ok || te.Code != types.ErrPluginNotAvailable {
			t.Errorf("fail-closed STATUS without agent (%s) = %v, want code 50", extra, err)
		}
	}
	sock := fakeAgent(t, func(agentapi.Request) {}, func(agentapi.Request) *agentapi.Response { return &agentapi.Response{} })
	if err := status(`"agentSocket":"` + sock + `","failClosed":true,`); err != nil {
		t.Errorf("fail-closed STATUS with agent: %v", err)
	}
}
