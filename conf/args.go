package conf

import (
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

type cniArgs struct {
	podNamespace string
	podName      string
	ips          []string
}

// parseArgs reads the CNI_ARGS string ("K=V;K=V"). Unknown keys are ignored,
// as the kubelet passes keys (K8S_POD_INFRA_CONTAINER_ID, IgnoreUnknown...)
// that plugins are free to skip. Not strict (for the commands after ADD), an
// entry that is not KEY=VALUE is skipped too.
func parseArgs(s string, strict bool) (cniArgs, error) {
	var a cniArgs
	if s == "" {
		return a, nil
	}
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok && !strict {
			continue
		}
		if !ok {
			return a, &Error{Code: types.ErrInvalidEnvironmentVariables, Field: "CNI_ARGS",
				Msg: "entry " + quote(kv) + " is not KEY=VALUE"}
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			a.podNamespace = v
		case "K8S_POD_NAME":
			a.podName = v
		case "IP":
			for _, ip := range strings.Split(v, ",") {
				if ip = strings.TrimSpace(ip); ip != "" {
					a.ips = append(a.ips, ip)
				}
			}
		}
	}
	return a, nil
}

func quote(s string) string { return "\"" + s + "\"" }
