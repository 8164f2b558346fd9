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

func TestFailClosedRollsBackWhenAgentHangs(t *testing.T) {
	e := newEnv(t)
	sock := fakeAgent(t, func(agentapi.Request) {}, func(agentapi.Request) *agentapi.Response { return nil })
	stdin := e.conf("1.1.0", `"agentSocket":"`+sock+`","agentWait":"200ms","failClosed":true,`)
	_, err := e.tryAdd(stdin, "")
	te, ok := err.(*types.Error)
	if !ok || te.Code != types.ErrTryAgainLater {
		t.Fatalf("ADD = %v, want code 11", err)
	}
	if r := e.reserved(); len(r) != 0 {
		t.Errorf("addresses leaked: %v", r)
	}
	_ = e.inNode(func() error {
		if _, err := netlink.LinkByName(HostVethName("weir", "ctr1", "eth0")); err == nil {
			t.Error("host veth leaked")
		}
		return nil
	})
	_ = e.pod.Do(func(ns.NetNS) error {
		if _, err := netlink.LinkByName("eth0"); err == nil {
			t.Error("pod eth0 leaked")
		}
		return nil
	})
}

func TestNoAgentFailOpenWiresThePod(t *testing.T) {
	e := newEnv(t)
	stdin := e.conf("1.1.0", `"agentSocket":"`+filepath.Join(t.TempDir(), "none.sock")+`",`)
	res := e.add(stdin)
	if err := e.check(res); err != nil {
		t.Fatal(err)
	}
}

func TestStatusNeedsTheAgentOnlyWhenFailClosed(t *testing.T) {
	e := newEnv(t)
	none := filepath.Join(t.TempDir(), "none.sock")
	status := func(extra string) error {
		stdin := e.conf("1.1.0", extra)
		return e.inNode(func() error { return cmdStatus(e.args(stdin)) })
	}
	if err := status(`"agentSocket":"` + none + `",`); err != nil {
		t.Errorf("fail-open STATUS without agent: %v", err)
	}
	err := status(`"agentSocket":"` + none + `","failClosed":true,"agentWait":"200ms",`)
	if te, ok := err.(*types.Error); !ok || te.Code != types.ErrPluginNotAvailable {
		t.Errorf("fail-closed STATUS without agent = %v, want code 50", err)
	}
	sock := fakeAgent(t, func(agentapi.Request) {}, func(agentapi.Request) *agentapi.Response { return &agentapi.Response{} })
	if err := status(`"agentSocket":"` + sock + `","failClosed":true,`); err != nil {
		t.Errorf("fail-closed STATUS with agent: %v", err)
	}
}
