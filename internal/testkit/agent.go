package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/weir-cni/weir/agentapi"
	"github.com/weir-cni/weir/dataplane"
)

// AgentStatus is the part of weir-agent's status answer that tests,
// benchmarks and the demo read.
type AgentStatus struct {
	Synced    bool
	Syncs     int
	LastError string
	Problems  []string
	// DataplaneProblems are what the backend could not express.
	DataplaneProblems []dataplane.Problem
	// LastSyncTimes are the phases of the last applied sync.
	LastSyncTimes agentapi.SyncTimes
}

// Status asks the weir-agent listening on sock for its status, waiting a
// second at most.
func Status(ctx context.Context, sock string) (AgentStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := agentapi.Call(ctx, sock, agentapi.Request{Op: agentapi.OpStatus})
	if err != nil {
		return AgentStatus{}, err
	}
	var st AgentStatus
	if err := json.Unmarshal(resp.Result, &st); err != nil {
		return AgentStatus{}, fmt.Errorf("agent status: %w", err)
	}
	return st, nil
}

// WaitSynced asks the agent on sock for its status until it has synced
// once, for limit at most, and returns that status.
func WaitSynced(ctx context.Context, sock string, limit time.Duration) (AgentStatus, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if st, err := Status(ctx, sock); err == nil && st.Synced {
			return st, nil
		}
		if ctx.Err() != nil {
			return AgentStatus{}, ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return AgentStatus{}, fmt.Errorf("weir-agent did not sync within %v", limit)
}
