package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"syscall"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
)

// StartIn starts cmd with the calling thread inside netns, so the process
// (and everything it execs) lives in that namespace. The caller waits.
func StartIn(netns ns.NetNS, cmd *exec.Cmd) error {
	return netns.Do(func(ns.NetNS) error { return cmd.Start() })
}

// RunIn runs cmd inside netns and waits for it.
func RunIn(netns ns.NetNS, cmd *exec.Cmd) error {
	if err := StartIn(netns, cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// Call is one plugin invocation, as a runtime makes it.
type Call struct {
	Command     string // ADD, DEL, CHECK, VERSION, STATUS, GC
	ContainerID string
	Netns       string // path; empty leaves CNI_NETNS unset
	IfName      string // empty leaves CNI_IFNAME unset
	Args        string // CNI_ARGS
	Path        string // CNI_PATH
	Conf        []byte // stdin
	// Omit lists CNI_* variables to leave out even when set above.
	Omit []string
}

// Env returns the CNI_* environment of the call.
func (c Call) Env() []string {
	vars := [][2]string{
		{"CNI_COMMAND", c.Command},
		{"CNI_CONTAINERID", c.ContainerID},
		{"CNI_NETNS", c.Netns},
		{"CNI_IFNAME", c.IfName},
		{"CNI_ARGS", c.Args},
		{"CNI_PATH", c.Path},
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
outer:
	for _, kv := range vars {
		if kv[1] == "" {
			continue
		}
		for _, o := range c.Omit {
			if o == kv[0] {
				continue outer
			}
		}
		env = append(env, kv[0]+"="+kv[1])
	}
	return env
}

// Cmd returns the exec.Cmd running bin for the call; stdout and stderr are
// captured into the returned buffers.
func (c Call) Cmd(ctx context.Context, bin string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, bin)
	// Its own process group: a Ctrl-C meant for the caller must not kill a
	// plugin half-way (the caller decides, and cleans up with DEL).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = c.Env()
	cmd.Stdin = bytes.NewReader(c.Conf)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	return cmd, &out, &errb
}

// Outcome is what a plugin run returned.
type Outcome struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
	// Err is the CNI error printed on stdout when the plugin failed.
	Err *types.Error
}

// Exec runs bin for the call inside netns and decodes a CNI error from
// stdout when the plugin exits non-zero. The returned error is for
// failures to run at all (or a failure without a CNI error on stdout).
func (c Call) Exec(ctx context.Context, netns ns.NetNS, bin string) (Outcome, error) {
	cmd, out, errb := c.Cmd(ctx, bin)
	err := RunIn(netns, cmd)
	o := Outcome{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	if err == nil {
		return o, nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return o, fmt.Errorf("run %s %s: %w", bin, c.Command, err)
	}
	o.ExitCode = ee.ExitCode()
	te := &types.Error{}
	if jerr := json.Unmarshal(out.Bytes(), te); jerr != nil || te.Code == 0 {
		return o, fmt.Errorf("%s %s exited %d without a CNI error on stdout: stdout %q stderr %q",
			bin, c.Command, o.ExitCode, out.String(), errb.String())
	}
	o.Err = te
	return o, nil
}

// NodeExec is a libcni invoke.Exec that runs every plugin inside a node
// namespace, the way a runtime on that node would.
type NodeExec struct {
	Node ns.NetNS
	raw  invoke.RawExec
	dec  version.PluginDecoder
}

var _ invoke.Exec = (*NodeExec)(nil)

// ExecPlugin implements invoke.Exec.
func (e *NodeExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	var out []byte
	err := e.Node.Do(func(ns.NetNS) error {
		var err error
		out, err = e.raw.ExecPlugin(ctx, pluginPath, stdinData, environ)
		return err
	})
	return out, err
}

// FindInPath implements invoke.Exec.
func (e *NodeExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

// Decode implements invoke.Exec.
func (e *NodeExec) Decode(jsonBytes []byte) (version.PluginInfo, error) {
	return e.dec.Decode(jsonBytes)
}
