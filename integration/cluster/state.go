package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// State is what Down needs to remove a cluster, written to the cluster
// directory as each piece is made, so even a half-built cluster (or one
// whose harness was killed) is removed whole.
type State struct {
	// Netns are the network namespaces made, by name.
	Netns []string `json:"netns"`
	// Procs are the processes started (each the leader of its own
	// process group), in start order.
	Procs []Proc `json:"procs"`
	// Holders are the processes keeping each node's mount namespace.
	Holders map[string]int `json:"holders"`
	// CgroupRoots are the kubelets' cgroup roots ("/weir-e2e-n1"), made in
	// every cgroup v1 hierarchy.
	CgroupRoots []string `json:"cgroupRoots"`
	// Dirs are host directories made as bind-mount targets (removed if
	// empty at Down).
	Dirs []string `json:"dirs"`

	mu   sync.Mutex
	path string
}

// Proc is one started process.
type Proc struct {
	Name string `json:"name"`
	Pid  int    `json:"pid"`
	// Start is the process's start time in clock ticks (field 22 of
	// /proc/PID/stat), so a recycled pid is never killed.
	Start uint64 `json:"start"`
}

const stateFile = "state.json"

func loadState(dir string) (*State, error) {
	s := &State{Holders: map[string]int{}, path: filepath.Join(dir, stateFile)}
	err := readJSON(s.path, s)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster state: %w", err)
	}
	if s.Holders == nil {
		s.Holders = map[string]int{}
	}
	return s, nil
}

// update changes the state under its lock and writes it out.
func (s *State) update(f func(*State)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
	if err := writeJSON(s.path, s, 0o600); err != nil {
		return fmt.Errorf("cluster state: %w", err)
	}
	return nil
}

// readJSON decodes the JSON file at path into v.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

// writeJSON writes v to path as indented JSON, through a temporary file
// renamed over path, so that a reader never sees half of it.
func writeJSON(path string, v any, perm os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, perm); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
