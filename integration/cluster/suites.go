package cluster

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Suite is one run of the upstream e2e binary over a focus.
type Suite struct {
	Name string
	// Focus and Skip are ginkgo regular expressions.
	Focus, Skip string
	// SkipReason is printed for every spec that Skip leaves out.
	SkipReason string
	// Procs runs specs in parallel through the ginkgo CLI (>1); the
	// netpol specs are independent of each other.
	Procs int
}

// Case is one spec's result.
type Case struct {
	Name     string
	State    string // passed, failed, skipped
	Message  string
	Duration time.Duration
}

// Result is a suite's outcome.
type Result struct {
	Suite    Suite
	Cases    []Case
	Duration time.Duration
	// Err is a failure to run the suite at all.
	Err error
}

// Count returns the number of cases in state.
func (r Result) Count(state string) int {
	n := 0
	for _, c := range r.Cases {
		if c.State == state {
			n++
		}
	}
	return n
}

// E2E runs the e2e binary (with ginkgo when s.Procs > 1) in the control
// plane's namespace against the cluster, writing JUnit XML and the log
// under dir/<suite name>.
func (c *Cluster) E2E(ctx context.Context, e2eBin, ginkgoBin, dir string, s Suite, stdout io.Writer) Result {
	start := time.Now()
	res := Result{Suite: s}
	out := filepath.Join(dir, s.Name)
	if err := os.MkdirAll(out, 0o755); err != nil {
		res.Err = err
		return res
	}
	flags := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--provider=local",
		"--kubectl-path=" + c.Binaries.Kubectl,
		"--report-dir=" + out,
		"--ginkgo.focus=" + s.Focus,
		"--ginkgo.no-color",
		"--ginkgo.timeout=3h",
		"--allowed-not-ready-nodes=0",
	}
	if s.Skip != "" {
		flags = append(flags, "--ginkgo.skip="+s.Skip)
	}
	var argv []string
	if s.Procs > 1 && ginkgoBin != "" {
		gflags := []string{"--procs=" + fmt.Sprint(s.Procs), "--no-color", "--timeout=3h", "--focus=" + s.Focus}
		if s.Skip != "" {
			gflags = append(gflags, "--skip="+s.Skip)
		}
		var rest []string
		for _, f := range flags {
			if !strings.HasPrefix(f, "--ginkgo.") {
				rest = append(rest, f)
			}
		}
		// ginkgo runs a precompiled suite only by a name ending in .test.
		link := filepath.Join(out, "e2e.test")
		_ = os.Remove(link)
		if err := os.Symlink(e2eBin, link); err != nil {
			res.Err = err
			return res
		}
		argv = c.CPArgv(ginkgoBin, append(append(gflags, link, "--"), rest...)...)
	} else {
		argv = c.CPArgv(e2eBin, flags...)
	}
	runErr := c.runSuite(ctx, s.Name, argv, nil, out, filepath.Join(out, "e2e.log"), stdout)
	res.Duration = time.Since(start)
	cases, err := readJUnit(out)
	if err != nil {
		res.Err = fmt.Errorf("%v (e2e exit: %v)", err, runErr)
		return res
	}
	res.Cases = selectCases(cases, s)
	if len(res.Cases) == 0 {
		res.Err = fmt.Errorf("no spec matched %q (e2e exit: %v)", s.Focus, runErr)
	}
	return res
}

// runSuite runs a suite's command line in dir, with env added to the
// environment, writing its output to logPath (and to stdout when set).
func (c *Cluster) runSuite(ctx context.Context, name string, argv, env []string, dir, logPath string, stdout io.Writer) error {
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = log
	if stdout != nil {
		cmd.Stdout = io.MultiWriter(log, stdout)
	}
	cmd.Stderr = cmd.Stdout
	c.logf("suite %s: %s", name, strings.Join(argv, " "))
	return cmd.Run()
}

type junitSuites struct {
	Suites []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name    string    `xml:"name,attr"`
	Time    float64   `xml:"time,attr"`
	Status  string    `xml:"status,attr"`
	Skipped *junitMsg `xml:"skipped"`
	Failure *junitMsg `xml:"failure"`
	Error   *junitMsg `xml:"error"`
}

type junitMsg struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// readJUnit reads every junit*.xml ginkgo wrote in dir.
func readJUnit(dir string) ([]Case, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "junit*.xml"))
	if len(files) == 0 {
		return nil, fmt.Errorf("no JUnit report in %s", dir)
	}
	var out []Case
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var js junitSuites
		if err := xml.Unmarshal(b, &js); err != nil {
			return nil, fmt.Errorf("parse %s: %w", f, err)
		}
		for _, s := range js.Suites {
			for _, jc := range s.Cases {
				c := Case{Name: jc.Name, State: "passed", Duration: time.Duration(jc.Time * float64(time.Second))}
				switch {
				case jc.Failure != nil:
					c.State, c.Message = "failed", firstLine(jc.Failure.Message+" "+jc.Failure.Text)
				case jc.Error != nil:
					c.State, c.Message = "failed", firstLine(jc.Error.Message+" "+jc.Error.Text)
				case jc.Skipped != nil:
					c.State, c.Message = "skipped", firstLine(jc.Skipped.Message)
				}
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// selectCases keeps the specs the suite asked for: those ginkgo ran, and
// the focused specs that s.Skip left out (with s.SkipReason). Specs
// outside the focus (ginkgo lists every spec of the binary) and suite
// setup nodes that passed are dropped.
func selectCases(cases []Case, s Suite) []Case {
	focus := regexp.MustCompile(s.Focus)
	var skip *regexp.Regexp
	if s.Skip != "" {
		skip = regexp.MustCompile(s.Skip)
	}
	var out []Case
	for _, c := range cases {
		setup := strings.HasPrefix(c.Name, "[SynchronizedBeforeSuite]") || strings.HasPrefix(c.Name, "[BeforeSuite]") ||
			strings.HasPrefix(c.Name, "[SynchronizedAfterSuite]") || strings.HasPrefix(c.Name, "[AfterSuite]") ||
			strings.HasPrefix(c.Name, "[ReportAfterSuite]") || strings.HasPrefix(c.Name, "[ReportBeforeSuite]")
		switch {
		case setup && c.State == "passed":
			continue
		case setup:
			out = append(out, c)
		case !focus.MatchString(c.Name):
			continue
		case c.State == "skipped" && skip != nil && skip.MatchString(c.Name):
			c.Message = s.SkipReason
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
