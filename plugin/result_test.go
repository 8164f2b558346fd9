package plugin

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/weir-cni/weir/conf"
	"github.com/weir-cni/weir/ipam"
)

func testAttachment() attachment {
	mac, _ := net.ParseMAC("0a:00:00:00:00:01")
	return attachment{
		hostName: "weir0123456789a",
		podName:  "eth0",
		podMAC:   mac,
		sandbox:  "/var/run/netns/p",
		addrs:    []netip.Addr{netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("fd00::5")},
		routes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"),
			netip.MustParsePrefix("10.96.0.0/12")},
	}
}

func TestResultInEverySupportedVersion(t *testing.T) {
	for _, v := range conf.SupportedVersions {
		t.Run(v, func(t *testing.T) {
			r, err := testAttachment().result().GetAsVersion(v)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				CNIVersion string `json:"cniVersion"`
				Interfaces []struct{ Name, Mac, Sandbox string }
				IPs        []struct {
					Version   string `json:"version"`
					Address   string `json:"address"`
					Gateway   string `json:"gateway"`
					Interface *int   `json:"interface"`
				} `json:"ips"`
				Routes []struct{ Dst, GW string }
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if got.CNIVersion != v {
				t.Errorf("cniVersion = %q", got.CNIVersion)
			}
			if len(got.Interfaces) != 2 || got.Interfaces[0].Name != "weir0123456789a" || got.Interfaces[0].Sandbox != "" ||
				got.Interfaces[1].Name != "eth0" || got.Interfaces[1].Sandbox != "/var/run/netns/p" || got.Interfaces[1].Mac != "0a:00:00:00:00:01" {
				t.Errorf("interfaces = %+v", got.Interfaces)
			}
			if len(got.IPs) != 2 || got.IPs[0].Address != "10.244.1.5/32" || got.IPs[0].Gateway != "169.254.1.1" ||
				got.IPs[1].Address != "fd00::5/128" || got.IPs[1].Gateway != "fe80::1" {
				t.Errorf("ips = %+v", got.IPs)
			}
			for _, ip := range got.IPs {
				if ip.Interface == nil || *ip.Interface != 1 {
					t.Errorf("ip %s not tied to the pod interface", ip.Address)
				}
				if (v == "0.3.1" || v == "0.4.0") && ip.Version == "" {
					t.Errorf("%s result lacks ips[].version", v)
				}
			}
			if len(got.Routes) != 3 || got.Routes[1].GW != "fe80::1" || got.Routes[2].Dst != "10.96.0.0/12" || got.Routes[2].GW != "169.254.1.1" {
				t.Errorf("routes = %+v", got.Routes)
			}
		})
	}
}

func TestResultSkipsRoutesOfMissingFamily(t *testing.T) {
	at := testAttachment()
	at.addrs = at.addrs[:1]
	r := at.result()
	for _, rt := range r.Routes {
		if rt.Dst.IP.To4() == nil {
			t.Errorf("IPv4-only pod got IPv6 route %v", rt.Dst)
		}
	}
}

func TestHostVethName(t *testing.T) {
	a := HostVethName("weir", "c1", "eth0")
	if len(a) != 15 || !strings.HasPrefix(a, "weir") {
		t.Errorf("name %q: want 15 chars with prefix", a)
	}
	if a != HostVethName("weir", "c1", "eth0") {
		t.Error("not deterministic")
	}
	if a == HostVethName("weir", "c1", "eth1") || a == HostVethName("weir", "c2", "eth0") {
		t.Error("different attachments share a name")
	}
	if got := HostVethName("wr", "c1", "eth0"); len(got) != 15 || !strings.HasPrefix(got, "wr") {
		t.Errorf("short prefix name %q", got)
	}
}

func TestAliasRoundTrip(t *testing.T) {
	net, a, ok := parseAlias(alias("k8s-pod-network", "abc.def_1", "eth0"))
	if !ok || net != "k8s-pod-network" || a != (ipam.Attachment{ContainerID: "abc.def_1", IfName: "eth0"}) {
		t.Errorf("round trip = %q %+v %v", net, a, ok)
	}
	for _, s := range []string{"", "other", "weir:a/b", "weir:a/b/c/d"} {
		if _, _, ok := parseAlias(s); ok {
			t.Errorf("parseAlias(%q) accepted", s)
		}
	}
}

func TestIPAMErrorCodes(t *testing.T) {
	cases := []struct {
		err  error
		code uint
	}{
		{ipam.ErrExhausted, types.ErrTryAgainLater},
		{ipam.ErrUnavailable, types.ErrTryAgainLater},
		{net.ErrClosed, types.ErrIOFailure},
	}
	for _, tc := range cases {
		var te *types.Error
		if e := ipamError(tc.err); !asTypes(e, &te) || te.Code != tc.code {
			t.Errorf("ipamError(%v) = %v, want code %d", tc.err, e, tc.code)
		}
	}
}

func asTypes(err error, te **types.Error) bool {
	e, ok := err.(*types.Error)
	*te = e
	return ok
}
