package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeSuite is a test package shaped like the conformance suite: a root
// test whose subtests are the cases, with subtests of their own, names
// sharing prefixes and spaces, a failure, a skip and a test outside the
// root.
const fakeSuite = `package fake

import "testing"

func TestRoot(t *testing.T) {
	t.Log("Test Setup: applying base manifests")
	t.Run("Alpha", func(t *testing.T) {
		t.Run("Should allow egress", func(t *testing.T) { t.Log("ran Alpha/allow") })
		t.Run("Should deny egress", func(t *testing.T) {
			t.Log("ran Alpha/deny")
			t.Log("Expected connection to fail, but instead it successfully connected.")
			t.Fatal("")
		})
	})
	t.Run("AlphaTwo", func(t *testing.T) { t.Log("ran AlphaTwo") })
	t.Run("Beta", func(t *testing.T) {
		t.Run("Should support an 'allow-egress' rule", func(t *testing.T) { t.Log("ran Beta/allow") })
		t.Run("Should support a 'deny-egress' rule", func(t *testing.T) { t.Log("ran Beta/deny") })
		t.Run("Should support a 'deny-egress' rule, twice", func(t *testing.T) { t.Log("ran Beta/deny twice") })
	})
	t.Run("Gamma", func(t *testing.T) { t.Skipf("Skipping Gamma: suite does not support %s", "GammaFeature") })
	t.Run("Delta", func(t *testing.T) { t.Log("ran Delta") })
	t.Log("after the subtests")
}

func TestOther(t *testing.T) { t.Log("ran Other") }
`

// TestGoTestSkipsExactlyWhatItListsAndCountsTheRest builds fakeSuite with
// go test -c, runs it with the flags GoTest passes and parses the output:
// go test's own matcher decides what the skip pattern leaves out.
func TestGoTestSkipsExactlyWhatItListsAndCountsTheRest(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command builds the fake suite: %v", err)
	}
	dir := t.TempDir()
	for name, data := range map[string]string{"go.mod": "module fake\n\ngo 1.24\n", "fake_test.go": fakeSuite} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command(goBin, "test", "-c", "-o", "fake.test", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=", "GOTOOLCHAIN=local")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c: %v\n%s", err, out)
	}
	g := GoTest{
		Name: "fake", Root: "TestRoot", Timeout: time.Minute, Args: []string{"-test.count=1"},
		Skip:       []SkippedTest{{Test: "Alpha"}, {Test: "Beta", Subtest: "Should support a 'deny-egress' rule"}, {Test: "Delta"}},
		SkipReason: "no SCTP",
	}
	// Alpha's skip leaves its failure out: run it once more unskipped.
	for _, skips := range [][]SkippedTest{g.Skip, g.Skip[1:]} {
		g := g
		g.Skip = skips
		skip, err := SkipPattern(g.Root, g.Skip)
		if err != nil {
			t.Fatal(err)
		}
		run := exec.Command(filepath.Join(dir, "fake.test"), g.flags(skip)...)
		out, _ := run.CombinedOutput()
		runs, err := parseGoTestV(strings.NewReader(string(out)))
		if err != nil {
			t.Fatal(err)
		}
		checkFakeRun(t, string(out), runs, g)
	}
}

func checkFakeRun(t *testing.T, out string, runs []*goTestRun, g GoTest) {
	t.Helper()
	alphaSkipped := slices.Contains(g.Skip, SkippedTest{Test: "Alpha"})
	ran := map[string]bool{}
	for _, r := range runs {
		for _, l := range r.log {
			if m := goTestLogged.FindStringSubmatch(l); m != nil && strings.HasPrefix(m[1], "ran ") {
				ran[strings.TrimPrefix(m[1], "ran ")] = true
			}
		}
	}
	want := map[string]bool{"AlphaTwo": true, "Beta/allow": true, "Beta/deny twice": true}
	if !alphaSkipped {
		want["Alpha/allow"], want["Alpha/deny"] = true, true
	}
	if !maps(ran, want) {
		t.Errorf("skip %q ran %v, want %v\n%s", g.Skip, keys(ran), keys(want), out)
	}
	got := map[string]string{}
	for _, c := range goTestCases(runs, g) {
		got[c.Name] = c.State + ": " + c.Message
	}
	wantCases := map[string]string{
		"AlphaTwo": "passed: ",
		"Beta":     "passed: ",
		"Gamma":    "skipped: Skipping Gamma: suite does not support GammaFeature",
		"Beta/Should_support_a_'deny-egress'_rule": "skipped: no SCTP",
		"Delta": "skipped: no SCTP",
	}
	if alphaSkipped {
		wantCases["Alpha"] = "skipped: no SCTP"
	} else {
		wantCases["Alpha"] = "failed: Should_deny_egress: Expected connection to fail, but instead it successfully connected."
	}
	if !maps(got, wantCases) {
		t.Errorf("skip %q: cases\n%v\nwant\n%v\n%s", g.Skip, got, wantCases, out)
	}
	for _, r := range runs {
		if r.name == "TestRoot" && slices.Contains(r.log, "FAIL") {
			t.Errorf("the root's log has go test's closing FAIL: %q", r.log)
		}
	}
}

func maps[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// A run whose setup fails before any subtest, and one cut off by the
// timeout, are failures with a message, not an empty success.
func TestGoTestReportsASetupFailureAndAnUnfinishedTest(t *testing.T) {
	const setupFailed = `=== RUN   TestConformance
    conformance_test.go:70: Running conformance tests with cleanup: true
    helper.go:137: StatefulSet replicas in namespace network-policy-conformance-gryffindor not rolled out yet. 1/2 replicas are available.
    helper.go:144: 
        	Error Trace:	/root/go/pkg/mod/sigs.k8s.io/network-policy-api@v0.3.0/conformance/utils/kubernetes/helper.go:144
        	Error:      	Received unexpected error:
        	            	context deadline exceeded
        	Messages:   	error waiting for network-policy-conformance-gryffindor namespaces to be ready
--- FAIL: TestConformance (300.12s)
FAIL
`
	g := GoTest{Root: "TestConformance"}
	runs, err := parseGoTestV(strings.NewReader(setupFailed))
	if err != nil {
		t.Fatal(err)
	}
	cases := goTestCases(runs, g)
	if len(cases) != 1 || cases[0].Name != "TestConformance" || cases[0].State != "failed" ||
		!strings.Contains(cases[0].Message, "not rolled out yet") {
		t.Errorf("setup failure: %+v", cases)
	}
	const cutOff = `=== RUN   TestConformance
=== RUN   TestConformance/CNPAdminTierEgressTCP
=== RUN   TestConformance/CNPAdminTierEgressTCP/Should_support_an_'allow-egress'_policy
    helper.go:101: Expected connection to succeed, but instead it miserably failed. stderr: TIMEOUT
panic: test timed out after 40m0s
	running tests:
		TestConformance (40m0s)
`
	runs, err = parseGoTestV(strings.NewReader(cutOff))
	if err != nil {
		t.Fatal(err)
	}
	cases = goTestCases(runs, g)
	if len(cases) != 1 || cases[0].Name != "CNPAdminTierEgressTCP" || cases[0].State != "failed" ||
		!strings.Contains(cases[0].Message, "did not finish") || !strings.Contains(cases[0].Message, "miserably failed") {
		t.Errorf("timeout: %+v", cases)
	}
}

func TestSkipPatternRefusesANameWithASlash(t *testing.T) {
	if _, err := SkipPattern("TestConformance", []SkippedTest{{Test: "a/b"}}); err == nil {
		t.Error("a name with '/' was accepted: go test would split it into levels")
	}
	if p, err := SkipPattern("TestConformance", nil); err != nil || p != "" {
		t.Errorf("no skips = %q, %v; want no pattern", p, err)
	}
}
