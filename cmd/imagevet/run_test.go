package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// runCLI runs `imagevet run ARGS...` in-process and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errOut, Stdin: strings.NewReader(""), Getenv: func(string) string { return "" }}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	code := dispatch(ctx, append([]string{"run"}, args...), env)
	return code, out.String(), errOut.String()
}

// Bad input is refused before anything runs, naming the field or flag, with exit 2.
func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"version":1,"id":"x","image":{"source":"a.qcow2","format":"vmdk","checksum":"sha256:00"},"guest":{"user":"debian"}}`), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{bad}, "image.format"},
		{[]string{bad}, "image.checksum"},
		{[]string{filepath.Join(dir, "absent.json")}, "absent.json"},
		{[]string{bad, "--accel", "warp"}, "image.format"}, // flags after JOB.json are flags
		{[]string{}, "give either JOB.json or --image"},
		{[]string{"--previous", filepath.Join(dir, "gone.json"), bad}, "--previous"},
		{[]string{"--previous", bad, bad}, "--previous " + bad + ": invalid result: guest: unknown field"},
		{[]string{"--image", bad}, "guest.user"},
		{[]string{"--accel", "warp", "--image", bad, "--user", "debian", "--checksum", "sha256:" + strings.Repeat("0", 64), "--format", "raw"}, "accel"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(t, c.args...)
		if code != exitError || !strings.Contains(stderr, c.want) {
			t.Errorf("run %v: exit %d, stderr %q; want exit 2 naming %q", c.args, code, stderr, c.want)
		}
	}
}

// A real run: the panic fixture fails (exit 1) with JSON and JUnit that say why.
func TestRunPanicFixtureJSONAndJUnit(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a guest")
	}
	fx := os.Getenv("IMAGEVET_FIXTURES")
	if fx == "" {
		fx = "/var/cache/imagevet/fixtures"
	}
	c, err := net.DialTimeout("unix", "/var/run/libvirt/libvirt-sock", time.Second)
	_, ferr := os.Stat(filepath.Join(fx, "tiny-panic.qcow2"))
	if err != nil || ferr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI: libvirtd (%v) and fixtures (%v) must be present", err, ferr)
		}
		t.Skipf("needs libvirtd and fixtures: %v %v", err, ferr)
	}
	c.Close()
	state, err := os.MkdirTemp("/var/tmp", "imagevet-cmdtest-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(state, 0o755)
	defer os.RemoveAll(state)
	junit := filepath.Join(state, "report.xml")
	// The verdict is compared with an earlier result (--previous) of a much smaller image.
	previous := filepath.Join(state, "previous.json")
	prevAt := time.Now().UTC().Add(-24 * time.Hour)
	prevData, _ := jobs.MarshalResult(jobs.Result{Version: jobs.Version, JobID: "tiny-panic-previous", Verdict: jobs.VerdictFail,
		Checks: []jobs.CheckResult{}, Stages: []jobs.Stage{}, Worker: "w", Attempt: 1, StartedAt: prevAt, FinishedAt: prevAt.Add(time.Minute),
		ImageFacts: &jobs.ImageFacts{Format: "qcow2", Size: 1024, VirtualSize: 1 << 20}})
	if err := os.WriteFile(previous, prevData, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "--accel", "tcg", "--state-dir", state, "--worker-id", "cmdtest",
		"--image-root", fx, "--json", "--junit", junit, "--quiet", "--previous", previous, "../../fixtures/jobs/tiny-panic.json")
	if code != exitFail {
		t.Fatalf("exit %d, want 1 (fail)\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	var res jobs.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	if res.FailedCheck != jobs.CheckBoot || !strings.Contains(res.ConsoleTail, "Kernel panic") {
		t.Errorf("result: %s %q", res.FailedCheck, res.Reason)
	}
	if res.Inspection == nil || res.Inspection.Changes == nil || res.Inspection.Changes.PreviousJob != "tiny-panic-previous" ||
		res.Inspection.Changes.SizeBefore != 1024 || !slices.Contains(res.Inspection.Changes.Regressed, jobs.MeasureSize) {
		t.Errorf("not compared with --previous: %+v", res.Inspection)
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool {
		return strings.HasPrefix(w, "regression since tiny-panic-previous: image size 1.0 KiB → ")
	}) {
		t.Errorf("warnings %q lack the size regression", res.Warnings)
	}
	data, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		XMLName xml.Name
		Inner   []byte `xml:",innerxml"`
	}
	if err := xml.Unmarshal(data, &suites); err != nil || !bytes.Contains(data, []byte("kernel panic")) {
		t.Errorf("junit report not well-formed or lacks the reason (%v):\n%s", err, data)
	}
}

// `run --image` sizes the machine from --vcpus/--memory or their IMAGEVET_*
// variables; without them it boots 2 vCPUs where the host has 2 (1 vCPU is
// 1.16-1.38x slower under TCG), never more than the host has.
func TestRunImageMachineSize(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.WriteFile(img, []byte("not really qcow2"), 0o644); err != nil {
		t.Fatal(err)
	}
	parse := func(vars map[string]string, args ...string) (jobs.Job, error) {
		t.Helper()
		env := Env{Stdout: io.Discard, Stderr: io.Discard, Stdin: strings.NewReader(""), Getenv: func(k string) string { return vars[k] }}
		p, err := parseRun(context.Background(), append([]string{"--image", img, "--user", "debian"}, args...), env)
		return p.job, err
	}
	job, err := parse(nil)
	if want := defaultRunVCPUs(runtime.NumCPU()); err != nil || job.Machine.VCPUs != want || job.Machine.MemoryMiB != jobs.DefaultMemoryMiB {
		t.Errorf("defaults: %+v %v, want %d vCPUs, %d MiB", job.Machine, err, want, jobs.DefaultMemoryMiB)
	}
	if job, err := parse(map[string]string{"IMAGEVET_VCPUS": "3", "IMAGEVET_MEMORY_MIB": "3072"}); err != nil || job.Machine.VCPUs != 3 || job.Machine.MemoryMiB != 3072 {
		t.Errorf("from the environment: %+v %v", job.Machine, err)
	}
	if job, err := parse(map[string]string{"IMAGEVET_VCPUS": "3"}, "--vcpus", "1", "--memory", "512"); err != nil || job.Machine.VCPUs != 1 || job.Machine.MemoryMiB != 512 {
		t.Errorf("flags over the environment: %+v %v", job.Machine, err)
	}
	for _, c := range []struct {
		vars map[string]string
		args []string
		want string
	}{
		{nil, []string{"--vcpus", "0"}, "--vcpus (IMAGEVET_VCPUS): 0 is not accepted"},
		{map[string]string{"IMAGEVET_MEMORY_MIB": "lots"}, nil, `IMAGEVET_MEMORY_MIB="lots": not an integer`},
		{nil, []string{"--vcpus", "65"}, "machine.vcpus"},
	} {
		if _, err := parse(c.vars, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: %v, want an error naming %q", c.vars, c.args, err, c.want)
		}
	}
	for host, want := range map[int]int{1: 1, 2: 2, 4: 2, 64: 2} {
		if got := defaultRunVCPUs(host); got != want {
			t.Errorf("a host with %d CPUs: %d vCPUs, want %d", host, got, want)
		}
	}
}
