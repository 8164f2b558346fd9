package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// GoTest is one run of a Go test binary (a suite built with go test -c,
// such as network-policy-api's conformance suite) against the cluster.
// Its cases are the root test's direct subtests.
type GoTest struct {
	Name string
	// Root is the one top-level test run (-test.run ^Root$).
	Root string
	// Skip lists the root's subtests, or their subtests, left out
	// (-test.skip); each is reported as skipped with SkipReason.
	Skip       []SkippedTest
	SkipReason string
	// Args are the suite's own flags.
	Args []string
	// Timeout is -test.timeout.
	Timeout time.Duration
	// Env is added to the binary's environment.
	Env []string
}

// SkippedTest is a subtest of GoTest.Root left out: Test, or only its
// Subtest when that is set. Names are as written in t.Run.
type SkippedTest struct {
	Test, Subtest string
}

// name is the skipped test's name as go test prints it, below the root.
func (s SkippedTest) name() string {
	if s.Subtest == "" {
		return testName(s.Test)
	}
	return testName(s.Test) + "/" + testName(s.Subtest)
}

// testName is a t.Run name as go test spells it: spaces become '_'.
func testName(s string) string { return strings.ReplaceAll(s, " ", "_") }

// SkipPattern returns the -test.skip expression that leaves out exactly
// skips below root: one alternative per skipped test or subtest, each
// level anchored and quoted, so no other test whose name shares a prefix
// is left out.
func SkipPattern(root string, skips []SkippedTest) (string, error) {
	var alts []string
	for _, s := range skips {
		levels := []string{root, s.Test}
		if s.Subtest != "" {
			levels = append(levels, s.Subtest)
		}
		var parts []string
		for _, l := range levels {
			// go test splits the expression at every '/' outside
			// brackets and parentheses before quoting can help.
			if l == "" || strings.Contains(l, "/") {
				return "", fmt.Errorf("test name %q cannot be skipped by -test.skip", l)
			}
			parts = append(parts, "^"+regexp.QuoteMeta(testName(l))+"$")
		}
		alts = append(alts, strings.Join(parts, "/"))
	}
	return strings.Join(alts, "|"), nil
}

// GoTest runs the test binary in the control plane's namespace against
// the cluster (KUBECONFIG set: clients that read no flag find it too),
// writing its go test -v output to dir/<name>/test.log, and reports the
// root's subtests as cases.
func (c *Cluster) GoTest(ctx context.Context, bin, dir string, g GoTest, stdout io.Writer) Result {
	start := time.Now()
	skip, err := SkipPattern(g.Root, g.Skip)
	res := Result{Suite: Suite{Name: g.Name, Skip: skip, SkipReason: g.SkipReason}}
	if err != nil {
		res.Err = err
		return res
	}
	out := filepath.Join(dir, g.Name)
	if err := os.MkdirAll(out, 0o755); err != nil {
		res.Err = err
		return res
	}
	logPath := filepath.Join(out, "test.log")
	env := append([]string{"KUBECONFIG=" + c.Kubeconfig}, g.Env...)
	runErr := c.runSuite(ctx, g.Name, c.CPArgv(bin, g.flags(skip)...), env, out, logPath, stdout)
	res.Duration = time.Since(start)
	log, err := os.Open(logPath)
	if err != nil {
		res.Err = fmt.Errorf("%w (exit: %v)", err, runErr)
		return res
	}
	defer log.Close()
	tests, err := parseGoTestV(log)
	if err != nil {
		res.Err = fmt.Errorf("read %s: %w", logPath, err)
		return res
	}
	res.Cases = goTestCases(tests, g)
	if len(res.Cases) == 0 {
		res.Err = fmt.Errorf("%s ran no test (exit: %v)", g.Root, runErr)
	}
	return res
}

// flags is the test binary's command line: the root alone, verbose, the
// timeout, the skip pattern, then the suite's own flags. -test.v=test2json
// is -test.v with a ^V before each header and result line, and with every
// subtest's result printed as it ends rather than with its parent's: a
// run cut off by its timeout still reports the tests that finished.
func (g GoTest) flags(skip string) []string {
	args := []string{"-test.run=^" + regexp.QuoteMeta(g.Root) + "$", "-test.v=test2json", "-test.timeout=" + g.Timeout.String()}
	if skip != "" {
		args = append(args, "-test.skip="+skip)
	}
	return append(args, g.Args...)
}

// goTestRun is one test or subtest as go test -v reports it.
type goTestRun struct {
	name  string // full name, Root/Sub/...
	state string // passed, failed, skipped; "" if it never ended
	took  time.Duration
	// log is what the test printed (t.Log and friends), one line each.
	log []string
}

var (
	goTestStart  = regexp.MustCompile(`^=== (RUN|NAME|CONT|PAUSE)\s+(\S+)$`)
	goTestResult = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)$`)
)

// parseGoTestV reads go test -v output (plain or test2json-framed):
// every test and subtest in the order they started, with the lines logged
// while each was the current one.
func parseGoTestV(r io.Reader) ([]*goTestRun, error) {
	var order []*goTestRun
	byName := map[string]*goTestRun{}
	get := func(name string) *goTestRun {
		t := byName[name]
		if t == nil {
			t = &goTestRun{name: name}
			byName[name] = t
			order = append(order, t)
		}
		return t
	}
	var cur *goTestRun
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := strings.TrimPrefix(sc.Text(), "\x16")
		if m := goTestStart.FindStringSubmatch(line); m != nil {
			cur = get(m[2])
			continue
		}
		if m := goTestResult.FindStringSubmatch(line); m != nil {
			t := get(m[2])
			t.state = map[string]string{"PASS": "passed", "FAIL": "failed", "SKIP": "skipped"}[m[1]]
			secs, _ := strconv.ParseFloat(m[3], 64)
			t.took = time.Duration(secs * float64(time.Second))
			// Output after a result belongs to no test until the
			// next header names one.
			cur = nil
			continue
		}
		if cur != nil && strings.TrimSpace(line) != "" {
			cur.log = append(cur.log, line)
		}
	}
	return order, sc.Err()
}

// goTestCases turns the runs into the suite's cases: one per direct
// subtest of the root, then one skipped case per entry of g.Skip. A root
// that failed with no failed subtest (its setup or cleanup failed) is a
// case of its own.
func goTestCases(runs []*goTestRun, g GoTest) []Case {
	prefix := g.Root + "/"
	var cases []Case
	var root *goTestRun
	subFailed := false
	for _, t := range runs {
		if t.name == g.Root {
			root = t
			continue
		}
		if !strings.HasPrefix(t.name, prefix) || strings.Contains(t.name[len(prefix):], "/") {
			continue
		}
		c := Case{Name: t.name[len(prefix):], State: t.state, Duration: t.took}
		switch t.state {
		case "failed", "":
			c.State, c.Message = "failed", failureMessage(runs, t)
			subFailed = true
		case "skipped":
			c.Message = lastLogged(t.log)
		}
		cases = append(cases, c)
	}
	if root != nil && (root.state == "failed" || root.state == "") && !subFailed {
		cases = append([]Case{{Name: g.Root, State: "failed", Duration: root.took, Message: failureMessage(runs, root)}}, cases...)
	}
	for _, s := range g.Skip {
		cases = append(cases, Case{Name: s.name(), State: "skipped", Message: g.SkipReason})
	}
	return cases
}

// failureMessage names the first failed (or unfinished) test at or below
// t and the last thing it logged.
func failureMessage(runs []*goTestRun, t *goTestRun) string {
	for _, s := range runs {
		if s != t && strings.HasPrefix(s.name, t.name+"/") && (s.state == "failed" || s.state == "") {
			return failureMessage(runs, s)
		}
	}
	msg := lastLogged(t.log)
	if t.state == "" {
		msg = strings.TrimSpace("did not finish (timeout or crash: see test.log) " + msg)
	}
	if i := strings.LastIndexByte(t.name, '/'); i >= 0 {
		msg = t.name[i+1:] + ": " + msg
	}
	return firstLine(msg)
}

// goTestLogged matches a t.Log line: "    file.go:12: text".
var goTestLogged = regexp.MustCompile(`^\s+\S+\.go:\d+: (.*\S)`)

// lastLogged is the text of the last non-empty t.Log line, or the last
// line printed when there is none.
func lastLogged(log []string) string {
	for i := len(log) - 1; i >= 0; i-- {
		if m := goTestLogged.FindStringSubmatch(log[i]); m != nil {
			return m[1]
		}
	}
	if len(log) > 0 {
		return strings.TrimSpace(log[len(log)-1])
	}
	return ""
}
