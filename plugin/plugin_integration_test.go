//go:build integration

package plugin

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/conf"
	"github.com/weir-cni/weir/internal/testkit"
	"github.com/weir-cni/weir/ipam"
)

// env is a node namespace and a pod namespace made for one test, with an
// agent that confirms every pod (weir fails closed without one).
type env struct {
	t         *testing.T
	node, pod ns.NetNS
	dataDir   string
	agentSock string
	log       bytes.Buffer // what the plugin logged
}

func newEnv(t *testing.T) *env {
	t.Helper()
	node, pod := testkit.NewTestNS(t, "weirt-pn-"), testkit.NewTestNS(t, "weirt-pp-")
	confirm := func(agentapi.Request) *agentapi.Response { return &agentapi.Response{} }
	return &env{t: t, node: node, pod: pod, dataDir: t.TempDir(), agentSock: fakeAgent(t, func(agentapi.Request) {}, confirm)}
}

// conf is the network config; members in extra come after the default
// agentSocket (the confirming agent), so an agentSocket there wins.
func (e *env) conf(version, extra string) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":%q,"name":"itest","type":"weir","agentSocket":%q,%s
		"ipam":{"ranges":[{"subnet":"10.77.0.0/24"},{"subnet":"fd00:77::/64"}],"dataDir":%q}}`, version, e.agentSock, extra, e.dataDir))
}

func (e *env) args(stdin []byte) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: "ctr1", Netns: e.pod.Path(), IfName: "eth0", StdinData: stdin}
}

// inNode runs f inside the node namespace, as the plugin binary would run.
func (e *env) inNode(f func() error) error {
	return e.node.Do(func(ns.NetNS) error { return f() })
}

// tryAdd runs ADD in the node namespace with CNI_ARGS cniArgs.
func (e *env) tryAdd(stdin []byte, cniArgs string) (types.Result, error) {
	var r types.Result
	err := e.inNode(func() error {
		c, err := conf.Load(stdin, cniArgs)
		if err != nil {
			return err
		}
		r, err = add(c, e.args(stdin), newLogger(&e.log))
		return err
	})
	return r, err
}

func (e *env) add(stdin []byte) *current.Result {
	e.t.Helper()
	r, err := e.tryAdd(stdin, "")
	if err != nil {
		e.t.Fatalf("ADD: %v", err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *env) check(prev *current.Result) error { return e.checkArgs(prev, "") }

// checkArgs runs CHECK of prev with CNI_ARGS cniArgs.
func (e *env) checkArgs(prev *current.Result, cniArgs string) error {
	raw := string(e.conf("1.1.0", ""))
	b, _ := prev.GetAsVersion("1.1.0")
	var sb strings.Builder
	_ = b.PrintTo(&sb)
	stdin := []byte(strings.Replace(raw, `"type":"weir",`, `"type":"weir","prevResult":`+sb.String()+`,`, 1))
	args := e.args(stdin)
	args.Args = cniArgs
	return e.inNode(func() error { return cmdCheck(args) })
}

func (e *env) reserved() map[string]ipam.Attachment {
	m, err := ipam.Open(e.dataDir, "itest")
	if err != nil {
		e.t.Fatal(err)
	}
	defer m.Close()
	l, err := m.List()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]ipam.Attachment{}
	for a, at := range l {
		out[a.String()] = at
	}
	return out
}

func TestCheckDetectsDrift(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(e *env) error
		want   string
	}{
		{"pod address removed", func(e *env) error {
			return e.pod.Do(func(ns.NetNS) error {
				l, err := netlink.LinkByName("eth0")
				if err != nil {
					return err
				}
				a, _ := netlink.ParseAddr("10.77.0.1/32")
				return netlink.AddrDel(l, a)
			})
		}, "lacks address 10.77.0.1"},
		{"pod default route removed", func(e *env) error {
			return e.pod.Do(func(ns.NetNS) error {
				_, dst, _ := net.ParseCIDR("::/0")
				return netlink.RouteDel(&netlink.Route{Dst: dst, Family: netlink.FAMILY_V6})
			})
		}, "no route to ::/0"},
		{"host route removed", func(e *env) error {
			return e.inNode(func() error {
				_, dst, _ := net.ParseCIDR("10.77.0.1/32")
				return netlink.RouteDel(&netlink.Route{Dst: dst, Scope: netlink.SCOPE_LINK})
			})
		}, "no route to 10.77.0.1/32"},
		{"host veth down", func(e *env) error {
			return e.inNode(func() error {
				l, err := netlink.LinkByName(HostVethName("weir", "ctr1", "eth0"))
				if err != nil {
					return err
				}
				return netlink.LinkSetDown(l)
			})
		}, "is down"},
		{"address released behind its back", func(e *env) error {
			m, err := ipam.Open(e.dataDir, "itest")
			if err != nil {
				return err
			}
			defer m.Close()
			return m.Release(ipam.Attachment{ContainerID: "ctr1", IfName: "eth0"})
		}, "not reserved"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			res := e.add(e.conf("1.1.0", ""))
			if err := e.check(res); err != nil {
				t.Fatalf("CHECK of a fresh attachment: %v", err)
			}
			if err := tc.break_(e); err != nil {
				t.Fatalf("break: %v", err)
			}
			err := e.check(res)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CHECK = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestAddRollsBackOnFailure(t *testing.T) {
	e := newEnv(t)
	// Something else already owns eth0 in the pod: ADD must fail and leave
	// neither an address reserved nor a host veth behind.
	if err := e.pod.Do(func(ns.NetNS) error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "other0"})
	}); err != nil {
		t.Fatal(err)
	}
	_, err := e.tryAdd(e.conf("1.1.0", ""), "")
	if err == nil {
		t.Fatal("ADD succeeded over an existing eth0")
	}
	e.nothingLeftOnNode()
}

func TestDuplicateAddKeepsFirstAttachment(t *testing.T) {
	e := newEnv(t)
	stdin := e.conf("1.1.0", "")
	res := e.add(stdin)
	_, err := e.tryAdd(stdin, "")
	te, ok := err.(*types.Error)
	if !ok || te.Code != ErrAttachmentExists {
		t.Fatalf("second ADD = %v, want code %d", err, ErrAttachmentExists)
	}
	if err := e.check(res); err != nil {
		t.Errorf("first attachment damaged by the duplicate ADD: %v", err)
	}
}

func TestDelIsIdempotent(t *testing.T) {
	e := newEnv(t)
	stdin := e.conf("1.1.0", "")
	e.add(stdin)
	for i := 0; i < 2; i++ {
		if err := e.inNode(func() error { return cmdDel(e.args(stdin)) }); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if r := e.reserved(); len(r) != 0 {
		t.Errorf("addresses still reserved after DEL: %v", r)
	}
	// DEL with the namespace gone altogether still succeeds.
	args := e.args(stdin)
	args.Netns = "/var/run/netns/does-not-exist"
	if err := e.inNode(func() error { return cmdDel(args) }); err != nil {
		t.Errorf("DEL without netns: %v", err)
	}
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "plugin integration tests need root")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestGCRemovesAliaslessOrphansOnly(t *testing.T) {
	e := newEnv(t)
	orphan := HostVethName("weir", "killed", "eth0")
	kept := HostVethName("weir", "alive", "eth0")
	mk := func(name string, mac net.HardwareAddr) {
		t.Helper()
		err := e.inNode(func() error {
			return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac}, PeerName: name[:10] + "p"})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	mk(orphan, hostMAC)
	mk(kept, hostMAC)
	foreignMAC, _ := net.ParseMAC("0a:00:00:00:00:09")
	mk("weirforeign0", foreignMAC)
	stdin := []byte(strings.Replace(string(e.conf("1.1.0", "")), `"type":"weir",`,
		`"type":"weir","cni.dev/valid-attachments":[{"containerID":"alive","ifname":"eth0"}],`, 1))
	if err := e.inNode(func() error { return cmdGC(e.args(stdin)) }); err != nil {
		t.Fatal(err)
	}
	_ = e.inNode(func() error {
		for name, want := range map[string]bool{orphan: false, kept: true, "weirforeign0": true} {
			_, err := netlink.LinkByName(name)
			if (err == nil) != want {
				t.Errorf("%s present=%v, want %v", name, err == nil, want)
			}
		}
		return nil
	})
}

// TestFailedAddKeepsAddressesTheAttachmentHeld: an ADD that fails frees
// only what it claimed. Here the attachment's address is still held (its
// host veth has another name since a prefix change, and its pod end is
// gone) and the new ADD fails on the pod's eth0: freeing the held address
// would hand it to the next pod while the first may still use it.
func TestFailedAddKeepsAddressesTheAttachmentHeld(t *testing.T) {
	e := newEnv(t)
	e.add(e.conf("1.1.0", ""))
	before := e.reserved()
	if len(before) != 2 {
		t.Fatalf("reserved after ADD: %v, want an IPv4 and an IPv6 address", before)
	}
	if err := e.inNode(func() error {
		l, err := netlink.LinkByName(HostVethName("weir", "ctr1", "eth0"))
		if err != nil {
			return err
		}
		return netlink.LinkDel(l)
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.pod.Do(func(ns.NetNS) error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "other0"})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tryAdd(e.conf("1.1.0", ""), ""); err == nil {
		t.Fatal("ADD succeeded over an existing eth0")
	}
	if after := e.reserved(); len(after) != len(before) {
		t.Errorf("the failed ADD freed addresses its attachment held: %v, before %v", after, before)
	}
	if err := e.inNode(func() error { return cmdDel(e.args(e.conf("1.1.0", ""))) }); err != nil {
		t.Fatal(err)
	}
	e.nothingLeftOnNode()
}

// TestDelAfterTheRangeChanged: DEL reads neither the addresses the pod
// asked for nor CNI_ARGS strictly, so a range changed since the ADD (the
// request now outside it) or an entry only ADD would refuse cannot leave
// the veth and the addresses behind.
func TestDelAfterTheRangeChanged(t *testing.T) {
	e := newEnv(t)
	e.add(e.conf("1.1.0", `"runtimeConfig":{"ips":["10.77.0.50"]},`))
	if r := e.reserved(); r["10.77.0.50"] == (ipam.Attachment{}) {
		t.Fatalf("reserved after ADD: %v, want 10.77.0.50", r)
	}
	changed := []byte(strings.Replace(string(e.conf("1.1.0", `"runtimeConfig":{"ips":["10.77.0.50"]},`)),
		`"subnet":"10.77.0.0/24"`, `"subnet":"10.78.0.0/24"`, 1))
	if _, err := conf.Load(changed, ""); err == nil {
		t.Fatal("ADD's Load accepts the changed config; the test tests nothing")
	}
	args := e.args(changed)
	args.Args = "IgnoreUnknown=1;K8S_POD_NAME"
	if err := e.inNode(func() error { return cmdDel(args) }); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	e.nothingLeft()
}

// TestGCRefusesWithoutValidAttachments: a GC request without the list of
// valid attachments is refused (code 7) and changes nothing; read as an
// empty list it would release every pod of the network. The key
// cni.dev/attachments stands in for it.
func TestGCRefusesWithoutValidAttachments(t *testing.T) {
	e := newEnv(t)
	stdin := e.conf("1.1.0", "")
	e.add(stdin)
	before := e.reserved()
	err := e.inNode(func() error { return cmdGC(e.args(stdin)) })
	var te *types.Error
	if !asTypes(err, &te) || te.Code != types.ErrInvalidNetworkConfig {
		t.Fatalf("GC without cni.dev/valid-attachments = %v, want code %d", err, types.ErrInvalidNetworkConfig)
	}
	if after := e.reserved(); len(after) != len(before) {
		t.Errorf("refused GC released addresses: %v, before %v", after, before)
	}
	host := HostVethName("weir", "ctr1", "eth0")
	present := func() bool {
		return e.inNode(func() error { _, err := netlink.LinkByName(host); return err }) == nil
	}
	if !present() {
		t.Error("refused GC deleted the host veth")
	}
	legacy := []byte(strings.Replace(string(stdin), `"type":"weir",`,
		`"type":"weir","cni.dev/attachments":[{"containerID":"ctr1","ifname":"eth0"}],`, 1))
	if err := e.inNode(func() error { return cmdGC(e.args(legacy)) }); err != nil {
		t.Fatalf("GC with cni.dev/attachments: %v", err)
	}
	if after := e.reserved(); len(after) != len(before) || !present() {
		t.Errorf("GC listing ctr1 under cni.dev/attachments removed it: %v", after)
	}
	// null is what libcni sends for no valid attachment (a drained node).
	for i, empty := range []string{"[]", "null"} {
		if i > 0 {
			e.add(stdin)
		}
		none := []byte(strings.Replace(string(stdin), `"type":"weir",`, `"type":"weir","cni.dev/valid-attachments":`+empty+`,`, 1))
		if err := e.inNode(func() error { return cmdGC(e.args(none)) }); err != nil {
			t.Fatalf("GC with the list %s: %v", empty, err)
		}
		e.nothingLeftOnNode()
	}
}
