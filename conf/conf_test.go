package conf

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

func TestLoadDefaults(t *testing.T) {
	c, err := Load([]byte(`{"cniVersion":"1.1.0","name":"net","type":"weir",
		"ipam":{"ranges":[{"subnet":"10.244.1.0/24"},{"subnet":"fd00:1::/64"}]}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.MTU != DefaultMTU || c.DataDir != DefaultDataDir || !c.IPMasq || c.HostIfPrefix != DefaultHostPrefix ||
		c.AgentSocket != DefaultAgentSocket || c.AgentWait != DefaultAgentWait {
		t.Errorf("defaults not applied: %+v", c)
	}
	if !c.FailClosed {
		t.Error("a config that does not mention failClosed fails open; want fail-closed by default")
	}
	want := []Range{
		{Subnet: netip.MustParsePrefix("10.244.1.0/24"), Start: netip.MustParseAddr("10.244.1.1"), End: netip.MustParseAddr("10.244.1.254")},
		{Subnet: netip.MustParsePrefix("fd00:1::/64"), Start: netip.MustParseAddr("fd00:1::1"), End: netip.MustParseAddr("fd00:1::ffff:ffff:ffff:ffff")},
	}
	if len(c.Ranges) != 2 || c.Ranges[0] != want[0] || c.Ranges[1] != want[1] {
		t.Errorf("ranges = %v, want %v", c.Ranges, want)
	}
	if got := prefixes(c.Routes); got != "0.0.0.0/0 ::/0" {
		t.Errorf("default routes = %s", got)
	}
}

func prefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}

func TestLoadFields(t *testing.T) {
	c, err := Load([]byte(`{"cniVersion":"0.3.1","name":"net","type":"weir","mtu":9000,"ipMasq":false,
		"hostInterfacePrefix":"wr","agentSocket":"/tmp/a.sock","agentWait":"500ms","failClosed":true,
		"ipam":{"ranges":[{"subnet":"10.0.0.0/16","rangeStart":"10.0.1.0","rangeEnd":"10.0.1.9"}],
		"routes":[{"dst":"10.96.0.0/12"}],"dataDir":"/tmp/d"},
		"runtimeConfig":{"ips":["10.0.1.5/16"]}}`), "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p1")
	if err != nil {
		t.Fatal(err)
	}
	if c.MTU != 9000 || c.IPMasq || c.HostIfPrefix != "wr" || c.AgentSocket != "/tmp/a.sock" ||
		c.AgentWait != 500*time.Millisecond || !c.FailClosed || c.DataDir != "/tmp/d" {
		t.Errorf("fields not read: %+v", c)
	}
	if c.Ranges[0].Start != netip.MustParseAddr("10.0.1.0") || c.Ranges[0].End != netip.MustParseAddr("10.0.1.9") {
		t.Errorf("range bounds = %v", c.Ranges[0])
	}
	if prefixes(c.Routes) != "10.96.0.0/12" {
		t.Errorf("routes = %v", c.Routes)
	}
	if len(c.Requested) != 1 || c.Requested[0] != netip.MustParseAddr("10.0.1.5") {
		t.Errorf("requested = %v", c.Requested)
	}
	if c.PodNamespace != "ns1" || c.PodName != "p1" {
		t.Errorf("pod = %s/%s", c.PodNamespace, c.PodName)
	}
}

func TestFailOpenIsAnExplicitOptIn(t *testing.T) {
	cases := []struct {
		name, fields   string
		wantFailClosed bool
		wantWait       time.Duration
	}{
		{"left out: fail-closed", ``, true, DefaultAgentWait},
		{"failClosed true: fail-closed", `"failClosed":true,`, true, DefaultAgentWait},
		{"failClosed false: fail-open", `"failClosed":false,`, false, DefaultAgentWait},
		{"failClosed false with agentWait 0s: the agent is not asked", `"failClosed":false,"agentWait":"0s",`, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load([]byte(`{"cniVersion":"1.1.0","name":"n","type":"weir",`+tc.fields+
				`"ipam":{"ranges":[{"subnet":"10.1.0.0/24"}]}}`), "")
			if err != nil {
				t.Fatal(err)
			}
			if c.FailClosed != tc.wantFailClosed || c.AgentWait != tc.wantWait {
				t.Errorf("failClosed = %v, agentWait = %v; want %v, %v", c.FailClosed, c.AgentWait, tc.wantFailClosed, tc.wantWait)
			}
		})
	}
}

func TestRequestedFromArgs(t *testing.T) {
	base := `{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":[{"subnet":"10.1.0.0/24"},{"subnet":"fd00::/120"}]}`
	c, err := Load([]byte(base+`}`), "IP=10.1.0.9,fd00::9")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Requested) != 2 || c.Requested[0] != netip.MustParseAddr("10.1.0.9") || c.Requested[1] != netip.MustParseAddr("fd00::9") {
		t.Errorf("requested = %v", c.Requested)
	}
	c, err = Load([]byte(base+`,"args":{"cni":{"ips":["fd00::7"]}}}`), "")
	if err != nil || len(c.Requested) != 1 || c.Requested[0] != netip.MustParseAddr("fd00::7") {
		t.Errorf("args.cni.ips: %v, %v", c, err)
	}
}

func TestLoadErrors(t *testing.T) {
	v := func(body string) string {
		return `{"cniVersion":"1.1.0","name":"n","type":"weir",` + body + `}`
	}
	ranges := `"ipam":{"ranges":[{"subnet":"10.1.0.0/24"}]}`
	cases := []struct {
		name, conf, args string
		code             uint
		fields           []string // every one must be named in the message
	}{
		{"malformed JSON is a decoding failure", `{"cniVersion":`, "", types.ErrDecodingFailure, nil},
		{"wrong JSON type is a decoding failure", v(`"mtu":"big",` + ranges), "", types.ErrDecodingFailure, []string{"mtu"}},
		{"unsupported version is incompatible", `{"cniVersion":"0.2.0","name":"n",` + ranges + `}`, "", types.ErrIncompatibleCNIVersion, []string{"cniVersion"}},
		{"missing version", `{"name":"n",` + ranges + `}`, "", types.ErrInvalidNetworkConfig, []string{"cniVersion"}},
		{"missing name", `{"cniVersion":"1.1.0",` + ranges + `}`, "", types.ErrInvalidNetworkConfig, []string{"name"}},
		{"no ranges", v(`"ipam":{}`), "", types.ErrInvalidNetworkConfig, []string{"ipam.ranges"}},
		{"bad CIDR", v(`"ipam":{"ranges":[{"subnet":"10.1.0.0/33"}]}`), "", types.ErrInvalidNetworkConfig, []string{"ipam.ranges[0].subnet"}},
		{"host bits set", v(`"ipam":{"ranges":[{"subnet":"10.1.0.5/24"}]}`), "", types.ErrInvalidNetworkConfig, []string{"did you mean 10.1.0.0/24"}},
		{"overlapping ranges", v(`"ipam":{"ranges":[{"subnet":"10.1.0.0/24"},{"subnet":"10.1.0.128/25"}]}`), "", types.ErrInvalidNetworkConfig, []string{"ipam.ranges[1]", "overlaps"}},
		{"rangeStart outside subnet", v(`"ipam":{"ranges":[{"subnet":"10.1.0.0/24","rangeStart":"10.2.0.1"}]}`), "", types.ErrInvalidNetworkConfig, []string{"rangeStart"}},
		{"rangeStart after rangeEnd", v(`"ipam":{"ranges":[{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.9","rangeEnd":"10.1.0.2"}]}`), "", types.ErrInvalidNetworkConfig, []string{"after rangeEnd"}},
		{"foreign ipam type", v(`"ipam":{"type":"host-local","ranges":[{"subnet":"10.1.0.0/24"}]}`), "", types.ErrInvalidNetworkConfig, []string{"ipam.type"}},
		{"mtu too small", v(`"mtu":100,` + ranges), "", types.ErrInvalidNetworkConfig, []string{"mtu"}},
		{"route of a family without range", v(`"ipam":{"ranges":[{"subnet":"10.1.0.0/24"}],"routes":[{"dst":"::/0"}]}`), "", types.ErrInvalidNetworkConfig, []string{"ipam.routes[0].dst"}},
		{"bad agentWait", v(`"agentWait":"soon",` + ranges), "", types.ErrInvalidNetworkConfig, []string{"agentWait"}},
		{"agentWait 0s is fail-open, so it needs the explicit opt-in", v(`"agentWait":"0s",` + ranges), "", types.ErrInvalidNetworkConfig, []string{"agentWait", `"failClosed": false`}},
		{"requested address outside ranges", v(ranges + `,"runtimeConfig":{"ips":["10.9.0.1"]}`), "", types.ErrInvalidNetworkConfig, []string{"ips", "10.9.0.1"}},
		{"two requested addresses of one family", v(ranges), "IP=10.1.0.2,10.1.0.3", types.ErrInvalidNetworkConfig, []string{"same family"}},
		{"malformed CNI_ARGS", v(ranges), "K8S_POD_NAME", types.ErrInvalidEnvironmentVariables, []string{"CNI_ARGS"}},
		{"every problem reported at once", v(`"mtu":1,"ipam":{"ranges":[{"subnet":"nope"}]}`), "", types.ErrInvalidNetworkConfig, []string{"mtu", "ipam.ranges[0].subnet"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.conf), tc.args)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			ce := CNI(err)
			if ce.Code != tc.code {
				t.Errorf("code = %d, want %d (%v)", ce.Code, tc.code, ce)
			}
			for _, f := range tc.fields {
				if !strings.Contains(ce.Error(), f) {
					t.Errorf("message %q does not name %q", ce.Error(), f)
				}
			}
		})
	}
}

// TestLoadExistingIgnoresWhatOnlyAddReads: what ADD alone reads (the
// addresses a pod asks for, every CNI_ARGS entry) cannot fail the commands
// after it, so a range changed since the ADD never keeps DEL from running;
// the network's own configuration is still checked.
func TestLoadExistingIgnoresWhatOnlyAddReads(t *testing.T) {
	v := func(body string) string {
		return `{"cniVersion":"1.1.0","name":"n","type":"weir",` + body + `}`
	}
	ranges := `"ipam":{"ranges":[{"subnet":"10.1.0.0/24"}]}`
	for _, tc := range []struct{ name, conf, args string }{
		{"requested address outside ranges", v(ranges + `,"runtimeConfig":{"ips":["10.9.0.1"]}`), ""},
		{"args.cni.ips outside ranges", v(ranges + `,"args":{"cni":{"ips":["10.9.0.1"]}}`), ""},
		{"two requested addresses of one family", v(ranges), "IP=10.1.0.2,10.1.0.3"},
		{"malformed CNI_ARGS entry", v(ranges), "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Load([]byte(tc.conf), tc.args); err == nil {
				t.Fatal("Load (ADD) succeeded; the case tests nothing")
			}
			c, err := LoadExisting([]byte(tc.conf), tc.args)
			if err != nil {
				t.Fatalf("LoadExisting: %v", err)
			}
			if len(c.Requested) != 0 {
				t.Errorf("requested = %v, want none read", c.Requested)
			}
		})
	}
	c, err := LoadExisting([]byte(v(ranges)), "K8S_POD_NAMESPACE=ns1;junk;K8S_POD_NAME=p")
	if err != nil || c.PodNamespace != "ns1" || c.PodName != "p" {
		t.Errorf("LoadExisting past a malformed entry: %+v, %v; want ns1/p", c, err)
	}
	if _, err := LoadExisting([]byte(v(`"ipam":{}`)), ""); err == nil {
		t.Error("LoadExisting accepted a network without ranges")
	}
}

func TestCNIKeepsFirstCode(t *testing.T) {
	err := errors.Join(&Error{Code: types.ErrIncompatibleCNIVersion, Msg: "a"}, invalid("x", "b"))
	if got := CNI(err).Code; got != types.ErrIncompatibleCNIVersion {
		t.Errorf("code = %d", got)
	}
}

func TestHostBounds(t *testing.T) {
	cases := []struct{ prefix, first, last string }{
		{"10.0.0.0/24", "10.0.0.1", "10.0.0.254"},
		{"10.0.0.0/30", "10.0.0.1", "10.0.0.2"},
		{"10.0.0.0/31", "10.0.0.0", "10.0.0.1"},
		{"10.0.0.7/32", "10.0.0.7", "10.0.0.7"},
		{"fd00::/126", "fd00::1", "fd00::3"},
		{"fd00::5/128", "fd00::5", "fd00::5"},
	}
	for _, tc := range cases {
		f, l := hostBounds(netip.MustParsePrefix(tc.prefix))
		if f.String() != tc.first || l.String() != tc.last {
			t.Errorf("%s: got %s-%s, want %s-%s", tc.prefix, f, l, tc.first, tc.last)
		}
	}
}

// TestShippedExampleFailsClosed pins cni-conf.json, the conflist the README
// shows and cnitool takes as is: the plugin reads it as fail-closed.
func TestShippedExampleFailsClosed(t *testing.T) {
	b, err := os.ReadFile("../cni-conf.json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil || len(list.Plugins) != 1 {
		t.Fatalf("cni-conf.json: %v", err)
	}
	p := list.Plugins[0]
	p["name"], p["cniVersion"] = list.Name, list.CNIVersion
	stdin, _ := json.Marshal(p)
	c, err := Load(stdin, "")
	if err != nil {
		t.Fatal(err)
	}
	if !c.FailClosed || c.AgentWait != DefaultAgentWait {
		t.Errorf("cni-conf.json: failClosed %v, agentWait %v; want fail-closed with the default wait", c.FailClosed, c.AgentWait)
	}
}
