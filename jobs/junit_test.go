package jobs

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func junitSample() []Result {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	pass := Result{Version: Version, JobID: "debian-12-20260501", Verdict: VerdictPass, Worker: "hv1", Attempt: 1,
		StartedAt: t0, FinishedAt: t0.Add(95 * time.Second), Publish: Publication{Name: "Debian 12"},
		ImageFacts: &ImageFacts{OSHashAlgo: "sha512", OSHashValue: "ab12"},
		Checks: []CheckResult{
			{Name: CheckBoot, Status: StatusPass, Required: true, Duration: Duration(80 * time.Second)},
			{Name: CheckSSH, Status: StatusPass, Required: true, Duration: Duration(2 * time.Second)},
			{Name: CheckCommands, Status: StatusFail, Required: false, Reason: "uname -r printed nothing"},
			{Name: CheckCloudInit, Status: StatusSkip, Required: false, Reason: "image has no cloud-init"},
		}}
	fail := Result{Version: Version, JobID: "broken-panic", Verdict: VerdictFail, FailedCheck: CheckBoot,
		Reason: "kernel panic", Worker: "hv1", Attempt: 1, StartedAt: t0, FinishedAt: t0.Add(12 * time.Second),
		ConsoleTail: "[    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs\x1b[0m <end>",
		Checks: []CheckResult{{Name: CheckBoot, Status: StatusFail, Required: true, Reason: "kernel panic",
			Detail: "matched: Kernel panic - not syncing", Duration: Duration(12 * time.Second)}}}
	invalid := Result{Version: Version, JobID: "bad-job", Verdict: VerdictError,
		Reason: "invalid job: image.source: required", Worker: "hv1", Attempt: 1, StartedAt: t0, FinishedAt: t0}
	return []Result{pass, fail, invalid}
}

func TestWriteJUnitGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, junitSample()...); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "junit.golden.xml")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("JUnit output differs from %s (run with -update after checking):\n%s", golden, buf.String())
	}
}

func TestWriteJUnitCounts(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, junitSample()...); err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not well-formed: %v", err)
	}
	if doc.Tests != 6 || doc.Failures != 1 || doc.Errors != 1 || doc.Skipped != 2 || len(doc.Suites) != 3 {
		t.Errorf("totals tests=%d failures=%d errors=%d skipped=%d suites=%d", doc.Tests, doc.Failures, doc.Errors, doc.Skipped, len(doc.Suites))
	}
	fail := doc.Suites[1].Cases[0].Failure
	if fail == nil || fail.Message != "kernel panic" || !strings.Contains(fail.Body, "matched: Kernel panic") ||
		!strings.Contains(fail.Body, "Unable to mount root fs") {
		t.Errorf("failure %+v", fail)
	}
	if e := doc.Suites[2].Cases[0].Error; e == nil || !strings.Contains(e.Message, "image.source: required") {
		t.Errorf("bad job not reported as an error testcase: %+v", doc.Suites[2].Cases)
	}
}

func TestWriteJUnitSurvivesHostileConsoles(t *testing.T) {
	r := Result{Version: Version, JobID: "nasty", Verdict: VerdictFail, FailedCheck: CheckBoot, Reason: "bad \x00 reason",
		ConsoleTail: "a ]]> b \x00\x07 \xff\xfe c", Checks: []CheckResult{{Name: CheckBoot, Status: StatusFail, Required: true, Reason: "x", Detail: "]]>"}}}
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, r); err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not well-formed: %v\n%s", err, buf.String())
	}
	if out := doc.Suites[0].SystemOut; out == nil || !strings.Contains(out.Text, "a ]]> b") {
		t.Errorf("console text lost: %+v", out)
	}
}
