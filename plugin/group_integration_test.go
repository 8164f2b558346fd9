//go:build integration

package plugin

import (
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/weir-cni/weir/nsgroup"
)

// hostGroup returns the link group of the test attachment's host veth.
func (e *env) hostGroup() uint32 {
	e.t.Helper()
	var g uint32
	err := e.inNode(func() error {
		l, err := netlink.LinkByName(HostVethName("weir", "ctr1", "eth0"))
		if err == nil {
			g = l.Attrs().Group
		}
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

// TestAddPutsHostVethInItsNamespaceGroup pins what the agent's ruleset
// relies on to deny an unclassified pod what its namespace denies: ADD
// puts the host veth in nsgroup.Of(K8S_POD_NAMESPACE), CHECK verifies it,
// and DEL is unaffected.
func TestAddPutsHostVethInItsNamespaceGroup(t *testing.T) {
	const args = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web"
	e := newEnv(t)
	stdin := e.conf("1.1.0", "")
	r, err := e.tryAdd(stdin, args)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		t.Fatal(err)
	}
	want := nsgroup.Of("shop")
	if got := e.hostGroup(); got != want || got == 0 {
		t.Fatalf("host veth in link group %d, want %d (nsgroup.Of(\"shop\"))", got, want)
	}
	if err := e.checkArgs(res, args); err != nil {
		t.Errorf("CHECK of a fresh attachment: %v", err)
	}
	if err := e.checkArgs(res, "K8S_POD_NAMESPACE=other;K8S_POD_NAME=web"); err == nil || !strings.Contains(err.Error(), "link group") {
		t.Errorf("CHECK naming another namespace = %v, want a link group error", err)
	}
	err = e.inNode(func() error {
		l, err := netlink.LinkByName(HostVethName("weir", "ctr1", "eth0"))
		if err != nil {
			return err
		}
		return netlink.LinkSetGroup(l, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.checkArgs(res, args); err == nil || !strings.Contains(err.Error(), "link group 0, want") {
		t.Errorf("CHECK after the group was reset = %v, want a link group error", err)
	}
	delArgs := e.args(stdin)
	delArgs.Args = args
	if err := e.inNode(func() error { return cmdDel(delArgs) }); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	e.nothingLeft()
}

// TestAddWithoutNamespaceStaysInDefaultGroup pins that a pod whose
// namespace CNI_ARGS does not name (cnitool) stays in group 0, which no
// namespace's group is, and that CHECK expects just that.
func TestAddWithoutNamespaceStaysInDefaultGroup(t *testing.T) {
	e := newEnv(t)
	res := e.add(e.conf("1.1.0", ""))
	if got := e.hostGroup(); got != 0 {
		t.Errorf("host veth in link group %d, want 0", got)
	}
	if err := e.check(res); err != nil {
		t.Errorf("CHECK: %v", err)
	}
}
