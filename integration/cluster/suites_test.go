package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// A ginkgo JUnit report lists every spec of the binary: the ones the
// focus left out are skipped too.
const junitSample = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" disabled="0" errors="0" failures="1" time="10">
  <testsuite name="Kubernetes e2e suite" package="/" tests="5" failures="1">
    <testcase name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="1.5"></testcase>
    <testcase name="[It] [sig-network] Netpol NetworkPolicy between server and client should deny ingress" classname="Kubernetes e2e suite" status="passed" time="30"></testcase>
    <testcase name="[It] [sig-network] Netpol NetworkPolicy between server and client should allow egress" classname="Kubernetes e2e suite" status="failed" time="40">
      <failure message="probe 3 of 81 wrong" type="failed">probe 3 of 81 wrong
more detail</failure>
    </testcase>
    <testcase name="[It] [sig-network] Netpol [Feature:SCTPConnectivity] should enforce policy based on Ports" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
    <testcase name="[It] [sig-storage] CSI something unrelated" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
  </testsuite>
</testsuites>`

func TestResultsKeepOnlyTheFocusedSpecsWithTheSkipReason(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "junit_01.xml"), []byte(junitSample), 0o644); err != nil {
		t.Fatal(err)
	}
	cases, err := readJUnit(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := Suite{Name: "netpol", Focus: "Netpol", Skip: "SCTPConnectivity", SkipReason: "no SCTP in this kernel"}
	r := Result{Suite: s, Cases: selectCases(cases, s)}
	if len(r.Cases) != 3 {
		t.Fatalf("got %d cases, want the 3 Netpol specs: %+v", len(r.Cases), r.Cases)
	}
	if r.Count("passed") != 1 || r.Count("failed") != 1 || r.Count("skipped") != 1 {
		t.Errorf("passed/failed/skipped = %d/%d/%d, want 1/1/1", r.Count("passed"), r.Count("failed"), r.Count("skipped"))
	}
	for _, c := range r.Cases {
		switch c.State {
		case "failed":
			if c.Message != "probe 3 of 81 wrong probe 3 of 81 wrong" {
				t.Errorf("failure message %q: want its first line", c.Message)
			}
		case "skipped":
			if c.Message != s.SkipReason {
				t.Errorf("skip message %q, want the suite's reason", c.Message)
			}
		}
	}
}

func TestAFailedSuiteSetupIsReported(t *testing.T) {
	cases := []Case{{Name: "[SynchronizedBeforeSuite]", State: "failed", Message: "nodes not ready"}}
	got := selectCases(cases, Suite{Focus: "Netpol"})
	if len(got) != 1 || got[0].State != "failed" {
		t.Fatalf("a failed suite setup must be kept as a failure: %+v", got)
	}
}

func TestNoJUnitIsAnError(t *testing.T) {
	if _, err := readJUnit(t.TempDir()); err == nil {
		t.Fatal("a run that wrote no report must not read as an empty success")
	}
}
