//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/weir-cni/weir/internal/testkit"
)

// cniRuntime is a libcni client running plugins inside one node.
type cniRuntime struct {
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

func newRuntime(t *testing.T, n *node, c netConf) *cniRuntime {
	t.Helper()
	list, err := libcni.NetworkConfFromBytes(c.list())
	if err != nil {
		t.Fatalf("parse conflist: %v", err)
	}
	return &cniRuntime{
		cni:  libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, t.TempDir(), &testkit.NodeExec{Node: n.ns}),
		list: list,
	}
}

func rtConf(id string, pod *testkit.NS) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: id,
		NetNS:       pod.Path(),
		IfName:      "eth0",
		Args:        [][2]string{{"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", id}},
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestLibcniAddCheckDelDelPerVersion(t *testing.T) {
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			n := newNode(t)
			pod := testkit.NewTestNS(t, "weirt-p-")
			c := n.conf("weirnet")
			c.Version = v
			rt := newRuntime(t, n, c)
			rc := rtConf("ctr-"+v, pod)

			res, err := rt.cni.AddNetworkList(ctxT(t), rt.list, rc)
			if err != nil {
				t.Fatalf("add: %v", err)
			}
			if res.Version() != v {
				t.Errorf("result version = %s, want %s", res.Version(), v)
			}
			cur, err := current.NewResultFromResult(res)
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, cur, pod)
			ips := podIPs(t, res)
			checkWired(t, n, pod, "eth0", ips)

			if v != "0.3.1" { // CHECK exists from 0.4.0 on
				if err := rt.cni.CheckNetworkList(ctxT(t), rt.list, rc); err != nil {
					t.Fatalf("check: %v", err)
				}
			}
			for _, round := range []string{"del", "del again"} {
				if err := rt.cni.DelNetworkList(ctxT(t), rt.list, rc); err != nil {
					t.Fatalf("%s: %v", round, err)
				}
				checkReleased(t, n, c.Name, pod, round)
			}
		})
	}
}

// checkResult pins the shape of an ADD result: a host veth without sandbox,
// the pod interface in the pod's sandbox, and each address with the
// gateway of its family on the pod interface.
func checkResult(t *testing.T, r *current.Result, pod *testkit.NS) {
	t.Helper()
	if len(r.Interfaces) != 2 {
		t.Fatalf("result interfaces = %+v, want host veth and pod eth0", r.Interfaces)
	}
	host, podIf := r.Interfaces[0], r.Interfaces[1]
	if host.Sandbox != "" || len(host.Name) == 0 || len(host.Name) > 15 {
		t.Errorf("host interface = %+v, want a named link without sandbox", host)
	}
	if podIf.Name != "eth0" || podIf.Sandbox != pod.Path() || podIf.Mac == "" {
		t.Errorf("pod interface = %+v, want eth0 with sandbox %s and a MAC", podIf, pod.Path())
	}
	if len(r.IPs) == 0 {
		t.Fatal("result has no IPs")
	}
	for _, ip := range r.IPs {
		want := gw4
		if ip.Address.IP.To4() == nil {
			want = gw6
		}
		gw, _ := netip.AddrFromSlice(ip.Gateway)
		if gw.Unmap() != want {
			t.Errorf("ip %s gateway = %v, want %s", ip.Address.String(), ip.Gateway, want)
		}
		if ip.Interface == nil || *ip.Interface != 1 {
			t.Errorf("ip %s interface index = %v, want 1 (the pod's)", ip.Address.String(), ip.Interface)
		}
	}
}

func TestLibcniGCReleasesOnlyInvalidAttachments(t *testing.T) {
	n := newNode(t)
	c := n.conf("weirnet")
	c.Ranges = subnets("10.244.1.0/24", "fd00:10:244:1::/64")
	rt := newRuntime(t, n, c)

	ips := map[string][]netip.Addr{}
	pods := map[string]*testkit.NS{}
	for _, id := range []string{"keep-1", "keep-2", "stale"} {
		pods[id] = testkit.NewTestNS(t, "weirt-p-")
		res, err := rt.cni.AddNetworkList(ctxT(t), rt.list, rtConf(id, pods[id]))
		if err != nil {
			t.Fatalf("add %s: %v", id, err)
		}
		ips[id] = podIPs(t, res)
	}
	if got := n.weirLinks(); len(got) != 3 {
		t.Fatalf("host veths after 3 adds = %v", got)
	}

	err := rt.cni.GCNetworkList(ctxT(t), rt.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{
		{ContainerID: "keep-1", IfName: "eth0"}, {ContainerID: "keep-2", IfName: "eth0"},
	}})
	if err != nil {
		t.Fatalf("gc: %v", err)
	}

	var want []string
	for _, id := range []string{"keep-1", "keep-2"} {
		for _, a := range ips[id] {
			want = append(want, a.String())
		}
	}
	got := n.allocated(c.Name)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("store after gc = %v, want only the valid attachments' %v (stale had %v)", got, want, ips["stale"])
	}
	if got := n.weirLinks(); len(got) != 2 {
		t.Errorf("host veths after gc = %v, want the 2 valid ones", got)
	}
	checkGone(t, pods["stale"], "eth0")
	for _, id := range []string{"keep-1", "keep-2"} {
		checkWired(t, n, pods[id], "eth0", ips[id])
		if err := rt.cni.CheckNetworkList(ctxT(t), rt.list, rtConf(id, pods[id])); err != nil {
			t.Errorf("check %s after gc: %v", id, err)
		}
	}

	// GC with nothing valid is the end state of a drained node.
	if err := rt.cni.GCNetworkList(ctxT(t), rt.list, &libcni.GCArgs{}); err != nil {
		t.Fatalf("gc of everything: %v", err)
	}
	if got := n.allocated(c.Name); len(got) != 0 {
		t.Errorf("store after gc of everything = %v", got)
	}
	if got := n.weirLinks(); len(got) != 0 {
		t.Errorf("host veths after gc of everything = %v", got)
	}
}

func TestLibcniStatus(t *testing.T) {
	n := newNode(t)
	c := n.conf("tiny")
	c.Ranges = subnets("10.250.0.0/30") // two pod addresses: .1 and .2
	rt := newRuntime(t, n, c)

	if err := rt.cni.GetStatusNetworkList(ctxT(t), rt.list); err != nil {
		t.Fatalf("status of an empty node: %v", err)
	}
	pods := []*testkit.NS{testkit.NewTestNS(t, "weirt-p-"), testkit.NewTestNS(t, "weirt-p-")}
	for i, p := range pods {
		if _, err := rt.cni.AddNetworkList(ctxT(t), rt.list, rtConf(fmt.Sprintf("p%d", i), p)); err != nil {
			t.Fatalf("add p%d: %v", i, err)
		}
	}
	err := rt.cni.GetStatusNetworkList(ctxT(t), rt.list)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrPluginNotAvailable {
		t.Fatalf("status with the range exhausted = %v, want CNI error code 50", err)
	}
	t.Logf("status when exhausted: %v", te)
	if err := rt.cni.DelNetworkList(ctxT(t), rt.list, rtConf("p0", pods[0])); err != nil {
		t.Fatalf("del p0: %v", err)
	}
	if err := rt.cni.GetStatusNetworkList(ctxT(t), rt.list); err != nil {
		t.Fatalf("status after a release: %v", err)
	}
}
