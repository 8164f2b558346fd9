package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/weir-cni/weir/integration/cluster"
)

var (
	shortName = regexp.MustCompile(`ShortName:\s*"([^"]+)"`)
	subtest   = regexp.MustCompile(`t\.Run\("([^"]+)"`)
)

// sctpProbes reads the conformance tests of the network-policy-api module
// weir's go.mod requires and returns what probes SCTP (an "sctp" argument):
// whole tests when every subtest (or the test's own body) does, else the
// subtests that do.
func sctpProbes(t *testing.T) []cluster.SkippedTest {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/network-policy-api").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("go list -m sigs.k8s.io/network-policy-api: %q %v (go mod download?)", out, err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "conformance", "tests", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance tests in %s: %v", dir, err)
	}
	var probes []cluster.SkippedTest
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tests := shortName.FindAllSubmatchIndex(src, -1)
		for i, m := range tests {
			end := len(src)
			if i+1 < len(tests) {
				end = tests[i+1][0]
			}
			probes = append(probes, testSCTPProbes(string(src[m[2]:m[3]]), string(src[m[1]:end]))...)
		}
	}
	return probes
}

// testSCTPProbes splits one test's source at its t.Run calls.
func testSCTPProbes(name, body string) []cluster.SkippedTest {
	runs := subtest.FindAllStringSubmatchIndex(body, -1)
	if len(runs) == 0 || strings.Contains(body[:runs[0][0]], `"sctp"`) {
		if strings.Contains(body, `"sctp"`) {
			return []cluster.SkippedTest{{Test: name}}
		}
		return nil
	}
	var subs []cluster.SkippedTest
	for i, r := range runs {
		end := len(body)
		if i+1 < len(runs) {
			end = runs[i+1][0]
		}
		if strings.Contains(body[r[1]:end], `"sctp"`) {
			subs = append(subs, cluster.SkippedTest{Test: name, Subtest: body[r[2]:r[3]]})
		}
	}
	if len(subs) == len(runs) {
		return []cluster.SkippedTest{{Test: name}}
	}
	return subs
}

// TestCNPSkipsAreExactlyTheSCTPProbes compares the skip list with the
// suite's source: nothing without an SCTP probe is skipped, nothing with
// one runs.
func TestCNPSkipsAreExactlyTheSCTPProbes(t *testing.T) {
	key := func(s cluster.SkippedTest) string { return s.Test + " / " + s.Subtest }
	var got, want []string
	for _, s := range cnpSCTPSkips {
		got = append(got, key(s))
	}
	for _, s := range sctpProbes(t) {
		want = append(want, key(s))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("skipped:\n  %s\nthe suite's SCTP probes:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if len(want) != 12 {
		t.Errorf("found %d SCTP tests and subtests in the suite, research counted 12: is the parse right?", len(want))
	}
}

func TestCNPSuiteSkipsOnlyWithoutSCTP(t *testing.T) {
	if g := cnpSuite(true); len(g.Skip) != 0 || g.SkipReason != "" {
		t.Errorf("with SCTP nothing is skipped: %+v", g)
	}
	g := cnpSuite(false)
	if len(g.Skip) != len(cnpSCTPSkips) || g.SkipReason != noSCTP {
		t.Errorf("without SCTP the SCTP tests are skipped with the reason: %+v", g)
	}
	if _, err := cluster.SkipPattern(g.Root, g.Skip); err != nil {
		t.Error(err)
	}
	if g.Root != "TestConformance" || !slices.Contains(g.Args, "-all-features") {
		t.Errorf("the suite runs TestConformance with every feature: %+v", g)
	}
}
