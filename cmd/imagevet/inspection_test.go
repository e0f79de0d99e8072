package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/imagevet/imagevet/jobs"
)

// TestResultTableSaysInspection: imagevet status (and run) say in one line what
// the inspection found, after the checks; a result without one says nothing.
func TestResultTableSaysInspection(t *testing.T) {
	r := jobs.Result{JobID: "d12", Verdict: jobs.VerdictPass, Checks: []jobs.CheckResult{{Name: jobs.CheckIdentity, Status: jobs.StatusPass}},
		Inspection: &jobs.Inspection{Distro: "debian", Version: "12.15", Codename: "bookworm", Arch: "x86_64", PackageFormat: "deb",
			Kernels: []string{"6.1.0-28-cloud-amd64"}, Packages: make([]jobs.Package, 3)}}
	var b bytes.Buffer
	printResultTable(&b, r)
	out := b.String()
	want := "\ninspection: debian 12.15 (bookworm) x86_64, kernel 6.1.0-28-cloud-amd64, 3 deb packages, took 0s\n"
	if i := strings.Index(out, want); i < 0 || i < strings.Index(out, "CHECK") {
		t.Fatalf("no %q after the checks:\n%s", want, out)
	}
	b.Reset()
	printResultTable(&b, jobs.Result{JobID: "none", Verdict: jobs.VerdictPass})
	if strings.Contains(b.String(), "inspection") {
		t.Errorf("a result without an inspection mentions one:\n%s", b.String())
	}
}
