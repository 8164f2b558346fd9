// Package agentapi is the wire format between the weir plugin and
// weir-agent over the agent's local unix socket: one JSON request line, one
// JSON response line. It is pure data plus a small client; the plugin uses
// it without pulling in client-go.
package agentapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// Ops the agent understands.
const (
	// OpPodAdded asks the agent to program a new pod's addresses into the
	// node's ruleset and answer only once the kernel has them.
	OpPodAdded = "pod-added"
	// OpStatus asks for the agent's status (weirctl status).
	OpStatus = "status"
	// OpRules asks for the node's compiled ruleset as nft text.
	OpRules = "rules"
	// OpExplain asks whether a connection would be allowed, and why.
	OpExplain = "explain"
	// OpAudit asks for the namespaces without a NetworkPolicy and the pods
	// no policy isolates (Audit).
	OpAudit = "audit"
)

// MaxRequestSize is the most bytes a request line may take, newline
// included; the agent answers a longer one with an error and hangs up.
// The largest legitimate request, a pod-added for a pod whose namespace
// and name are as long as Kubernetes allows (63 and 253 bytes), with a
// 64-byte container ID and a dual-stack address pair, encodes to about
// 500 bytes; explain requests are smaller.
const MaxRequestSize = 8 << 10

// Request is one call to the agent.
type Request struct {
	Op          string   `json:"op"`
	Namespace   string   `json:"namespace,omitempty"`
	Name        string   `json:"name,omitempty"`
	ContainerID string   `json:"containerID,omitempty"`
	IPs         []string `json:"ips,omitempty"`
	// Explain fields.
	Src      string `json:"src,omitempty"`
	Dst      string `json:"dst,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	Port     int    `json:"port,omitempty"`
}

// Response is the agent's answer. Error is empty on success.
type Response struct {
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// ErrNoAgent means nothing listens on the socket.
var ErrNoAgent = errors.New("weir-agent is not running")

// Call sends req to the agent at socket and waits for the answer until ctx
// ends.
func Call(ctx context.Context, socket string, req Request) (Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, fmt.Errorf("encode request: %w", err)
	}
	if len(b)+1 > MaxRequestSize {
		return Response{}, fmt.Errorf("encode request: %d bytes, the agent takes at most %d", len(b)+1, MaxRequestSize)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" && ctx.Err() == nil {
			return Response{}, fmt.Errorf("%w (socket %s): %v", ErrNoAgent, socket, err)
		}
		return Response{}, fmt.Errorf("dial agent %s: %w", socket, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return Response{}, fmt.Errorf("send request: %w", err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return Response{}, fmt.Errorf("read agent answer: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("decode agent answer: %w", err)
	}
	if resp.Error != "" {
		return resp, fmt.Errorf("agent: %s", resp.Error)
	}
	return resp, nil
}
