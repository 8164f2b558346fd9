// Package conf parses, defaults and validates the weir network configuration
// handed to the plugin on stdin, plus the runtime arguments (CNI_ARGS,
// runtimeConfig). It is pure: no I/O, no clock, no logging.
package conf

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// Defaults used when the configuration leaves a field out.
const (
	DefaultMTU         = 1500
	DefaultDataDir     = "/var/lib/cni/weir"
	DefaultAgentSocket = "/run/weir/agent.sock"
	DefaultAgentWait   = 2 * time.Second
	DefaultHostPrefix  = "weir"
)

// Gateways the pod routes through. They never leave the veth: the host end
// answers for them via a permanent neighbour entry installed in the pod.
var (
	GatewayV4 = netip.MustParseAddr("169.254.1.1")
	GatewayV6 = netip.MustParseAddr("fe80::1")
)

// SupportedVersions are the CNI spec versions weir speaks.
var SupportedVersions = []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// PluginInfo is the VERSION answer.
var PluginInfo = version.PluginSupports(SupportedVersions...)

// RawRange is one address range as written in the config.
type RawRange struct {
	Subnet     string `json:"subnet"`
	RangeStart string `json:"rangeStart,omitempty"`
	RangeEnd   string `json:"rangeEnd,omitempty"`
}

// RawRoute is a route the pod gets, as written in the config.
type RawRoute struct {
	Dst string `json:"dst"`
}

// RawIPAM is the "ipam" section. weir allocates in-process, so "type" must
// be empty or "weir".
type RawIPAM struct {
	Type    string     `json:"type,omitempty"`
	Ranges  []RawRange `json:"ranges"`
	Routes  []RawRoute `json:"routes,omitempty"`
	DataDir string     `json:"dataDir,omitempty"`
}

// RawConf is the plugin configuration exactly as JSON decodes it.
type RawConf struct {
	types.PluginConf
	IPAM         RawIPAM `json:"ipam"`
	MTU          int     `json:"mtu,omitempty"`
	IPMasq       *bool   `json:"ipMasq,omitempty"`
	HostIfPrefix string  `json:"hostInterfacePrefix,omitempty"`
	AgentSocket  string  `json:"agentSocket,omitempty"`
	AgentWait    string  `json:"agentWait,omitempty"`
	// FailClosed is a pointer so that leaving it out (fail closed) and
	// writing false (the explicit fail-open opt-in) differ.
	FailClosed    *bool `json:"failClosed,omitempty"`
	RuntimeConfig struct {
		IPs []string `json:"ips,omitempty"`
	} `json:"runtimeConfig,omitempty"`
	Args *struct {
		CNI struct {
			IPs []string `json:"ips,omitempty"`
		} `json:"cni,omitempty"`
	} `json:"args,omitempty"`
}

// Range is a validated address range: addresses from Start to End inclusive,
// all inside Subnet.
type Range struct {
	Subnet netip.Prefix
	Start  netip.Addr
	End    netip.Addr
}

// Contains reports whether a is inside the range.
func (r Range) Contains(a netip.Addr) bool {
	return r.Subnet.Contains(a) && a.Compare(r.Start) >= 0 && a.Compare(r.End) <= 0
}

// Is6 reports whether the range is IPv6.
func (r Range) Is6() bool { return r.Subnet.Addr().Is6() }

func (r Range) String() string {
	return fmt.Sprintf("%s (%s-%s)", r.Subnet, r.Start, r.End)
}

// NetConf is the validated, defaulted configuration the plugin acts on.
type NetConf struct {
	CNIVersion   string
	Name         string
	Type         string
	MTU          int
	IPMasq       bool
	HostIfPrefix string
	DataDir      string
	AgentSocket  string
	AgentWait    time.Duration
	// FailClosed makes ADD fail (code 11) unless the agent confirms the
	// pod within AgentWait. It is the default; only "failClosed": false
	// wires pods the agent has not confirmed.
	FailClosed bool
	// Ranges holds every range; at most one address per family is given
	// to a pod, taken from the first range of that family with room.
	Ranges []Range
	// Routes the pod gets via the gateway of the route's family.
	Routes []netip.Prefix
	// Requested addresses from runtimeConfig.ips, args.cni.ips or IP= in
	// CNI_ARGS, validated to lie in a range, at most one per family.
	Requested []netip.Addr
	// PodNamespace and PodName come from K8S_POD_NAMESPACE / K8S_POD_NAME.
	PodNamespace string
	PodName      string
	// PrevResult is the raw prevResult for CHECK / DEL, if any.
	PrevResult types.Result
	// Raw keeps what was decoded, for passing prevResult along.
	Raw *RawConf
}

// HasFamily reports whether some range is of the given family.
func (c *NetConf) HasFamily(v6 bool) bool {
	return slices.ContainsFunc(c.Ranges, func(r Range) bool { return r.Is6() == v6 })
}

// Error is a configuration problem with the CNI error code it maps to.
type Error struct {
	Code  uint
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// CNI converts any error returned by Load into a *types.Error. Several
// problems joined together keep the code of the first one.
func CNI(err error) *types.Error {
	if err == nil {
		return nil
	}
	code := types.ErrInvalidNetworkConfig
	var ce *Error
	if errors.As(err, &ce) {
		code = ce.Code
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	return types.NewError(code, "invalid weir configuration", err.Error())
}

func invalid(field, format string, a ...any) error {
	return &Error{Code: types.ErrInvalidNetworkConfig, Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Load decodes, defaults and validates stdin and the CNI_ARGS string for
// ADD. Every problem is reported at once; each names its field.
func Load(stdin []byte, cniArgs string) (*NetConf, error) { return load(stdin, cniArgs, true) }

// LoadExisting is Load for the commands that act on what ADD made or on the
// whole network (DEL, CHECK, GC, STATUS): the addresses a pod asked for
// (runtimeConfig.ips, args.cni.ips, CNI_ARGS IP=) are neither parsed nor
// checked against the ranges, and a CNI_ARGS entry that is not KEY=VALUE is
// skipped. A range changed since the ADD, or a request only ADD reads, must
// not keep DEL from deleting the veth and releasing the addresses.
func LoadExisting(stdin []byte, cniArgs string) (*NetConf, error) {
	return load(stdin, cniArgs, false)
}

func load(stdin []byte, cniArgs string, forAdd bool) (*NetConf, error) {
	raw := &RawConf{}
	if err := json.Unmarshal(stdin, raw); err != nil {
		return nil, &Error{Code: types.ErrDecodingFailure, Msg: fmt.Sprintf("decode network configuration: %v", err)}
	}
	c, err := fromRaw(raw)
	if err != nil {
		return nil, err
	}
	args, err := parseArgs(cniArgs, forAdd)
	if err != nil {
		return nil, err
	}
	c.PodNamespace, c.PodName = args.podNamespace, args.podName
	if !forAdd {
		return c, nil
	}
	var errs []error
	reqs := slices.Concat(raw.RuntimeConfig.IPs, args.ips)
	if raw.Args != nil {
		reqs = append(reqs, raw.Args.CNI.IPs...)
	}
	c.Requested, errs = requested(reqs, c.Ranges)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func fromRaw(raw *RawConf) (*NetConf, error) {
	c := &NetConf{
		CNIVersion:   raw.CNIVersion,
		Name:         raw.Name,
		Type:         raw.Type,
		MTU:          raw.MTU,
		IPMasq:       raw.IPMasq == nil || *raw.IPMasq,
		HostIfPrefix: raw.HostIfPrefix,
		DataDir:      raw.IPAM.DataDir,
		AgentSocket:  raw.AgentSocket,
		AgentWait:    DefaultAgentWait,
		FailClosed:   raw.FailClosed == nil || *raw.FailClosed,
		Raw:          raw,
	}
	var errs []error
	if c.CNIVersion == "" {
		errs = append(errs, invalid("cniVersion", "missing; weir supports %v", SupportedVersions))
	} else if !slices.Contains(SupportedVersions, c.CNIVersion) {
		errs = append(errs, &Error{Code: types.ErrIncompatibleCNIVersion, Field: "cniVersion",
			Msg: fmt.Sprintf("%q is not supported; weir supports %v", c.CNIVersion, SupportedVersions)})
	}
	if c.Name == "" {
		errs = append(errs, invalid("name", "missing"))
	}
	if raw.IPAM.Type != "" && raw.IPAM.Type != "weir" {
		errs = append(errs, invalid("ipam.type", "%q: weir allocates addresses itself; leave ipam.type empty", raw.IPAM.Type))
	}
	switch {
	case c.MTU == 0:
		c.MTU = DefaultMTU
	case c.MTU < 576 || c.MTU > 65535:
		errs = append(errs, invalid("mtu", "%d is outside 576..65535", c.MTU))
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.AgentSocket == "" {
		c.AgentSocket = DefaultAgentSocket
	}
	if c.HostIfPrefix == "" {
		c.HostIfPrefix = DefaultHostPrefix
	} else if len(c.HostIfPrefix) > 6 {
		errs = append(errs, invalid("hostInterfacePrefix", "%q is longer than 6 characters", c.HostIfPrefix))
	}
	if raw.AgentWait != "" {
		d, err := time.ParseDuration(raw.AgentWait)
		switch {
		case err != nil:
			errs = append(errs, invalid("agentWait", "%q is not a duration such as \"2s\"", raw.AgentWait))
		case d < 0:
			errs = append(errs, invalid("agentWait", "%q is negative", raw.AgentWait))
		case d == 0 && c.FailClosed:
			errs = append(errs, invalid("agentWait", "\"0s\" wires pods without asking the agent, which fail-closed forbids; "+
				"add \"failClosed\": false to opt into wiring pods the agent has not confirmed"))
		default:
			c.AgentWait = d
		}
	}
	var rerrs []error
	c.Ranges, rerrs = ranges(raw.IPAM.Ranges)
	errs = append(errs, rerrs...)
	c.Routes, rerrs = routes(raw.IPAM.Routes, c)
	errs = append(errs, rerrs...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if raw.RawPrevResult != nil {
		if err := version.ParsePrevResult(&raw.PluginConf); err != nil {
			return nil, &Error{Code: types.ErrDecodingFailure, Field: "prevResult", Msg: err.Error()}
		}
		c.PrevResult = raw.PrevResult
	}
	return c, nil
}
