package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm/fake"
)

// runInspected runs job on hv with inspector in place of libguestfs.
func runInspected(t *testing.T, hv *fake.Hypervisor, job jobs.Job, inspector Inspector) (jobs.Result, time.Duration) {
	t.Helper()
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	r.inspect = inspector
	start := time.Now()
	res := r.Run(context.Background(), job, 1, nil)
	took := time.Since(start)
	assertCleanedUp(t, cfg, hv)
	return res, took
}

func debian12Job(id string) jobs.Job {
	job := loginJob(id)
	job.Publish = jobs.Publication{Family: "debian-12", Properties: map[string]string{"os_distro": "debian", "os_version": "12"}}
	return job
}

// factsAfter is an inspector that finds facts after a delay, inspecting the
// read-only base under TCG as the worker asks.
func factsAfter(t *testing.T, d time.Duration, facts jobs.Inspection) Inspector {
	return func(ctx context.Context, file, format string, cfg inspect.Config) *jobs.Inspection {
		if !strings.HasSuffix(file, "base.qcow2") || format != "qcow2" || !cfg.TCG || !cfg.Nice || cfg.MemoryMiB == 0 {
			t.Errorf("inspected %s (%s) with %+v; want the base, under TCG, niced, memory bounded", file, format, cfg)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			// As inspect.Inspect: a session cut short is the worker's fault.
			return &jobs.Inspection{Error: "guestfish inspect-os: " + context.Cause(ctx).Error(), Fault: jobs.FaultWorker}
		}
		ins := facts
		ins.Took = jobs.Duration(d)
		return &ins
	}
}

// A passing job waits for an inspection that ends after the guest's checks, then
// records its facts, judges identity and fills the properties the job left empty.
func TestInspectionJoinedBeforeVerdict(t *testing.T) {
	addr, key := sshServerKey(t)
	hv := &fake.Hypervisor{SSHAddr: addr, Console: keysBlock(key)}
	bookworm := jobs.Inspection{OS: "linux", Distro: "debian", Version: "12.15", Codename: "bookworm", Arch: "x86_64", AdminUser: "debian"}
	res, _ := runInspected(t, hv, debian12Job("inspected"), factsAfter(t, 2*time.Second, bookworm))
	if res.Verdict != jobs.VerdictPass {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	c := res.Check(jobs.CheckIdentity)
	if c == nil || c.Status != jobs.StatusPass || c.Reason != "image is debian 12.15 (bookworm) x86_64" || c.Duration != jobs.Duration(2*time.Second) {
		t.Fatalf("identity = %+v", c)
	}
	if res.Inspection == nil || res.Inspection.Codename != "bookworm" {
		t.Fatalf("inspection not on the result: %+v", res.Inspection)
	}
	if p := res.Publish.Properties; p["architecture"] != "x86_64" || p["os_admin_user"] != "debian" || p["os_version"] != "12" {
		t.Fatalf("properties %v: want architecture and os_admin_user filled, os_version kept", p)
	}
}

// A Debian 13 image in a Debian 12 job fails identity, naming both sides.
func TestInspectionMislabelledFails(t *testing.T) {
	addr, key := sshServerKey(t)
	hv := &fake.Hypervisor{SSHAddr: addr, Console: keysBlock(key)}
	trixie := jobs.Inspection{OS: "linux", Distro: "debian", Version: "13.2", Codename: "trixie", Arch: "x86_64"}
	res, _ := runInspected(t, hv, debian12Job("mislabelled"), factsAfter(t, 0, trixie))
	want := "image is debian 13.2 (trixie) x86_64, the job says os_version 12, family debian-12"
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckIdentity || res.Reason != want {
		t.Fatalf("got %s/%s %q, want fail/identity %q", res.Verdict, res.FailedCheck, res.Reason, want)
	}
	if _, ok := res.Publish.Properties["architecture"]; ok {
		t.Errorf("a mislabelled image's properties were filled: %v", res.Publish.Properties)
	}
}

// A job that already failed does not wait for the inspection: it is cancelled
// and identity is not judged.
func TestInspectionCancelledWhenJobFailed(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t), Console: []fake.Line{
		{Text: "Linux version 6.1.0"}, {After: 200 * time.Millisecond, Text: "vet-nossh login: "}}}
	res, took := runInspected(t, hv, debian12Job("nossh-inspected"), factsAfter(t, time.Hour, jobs.Inspection{}))
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckSSH || took > 30*time.Second {
		t.Fatalf("got %s/%s %q after %s", res.Verdict, res.FailedCheck, res.Reason, took)
	}
	c := res.Check(jobs.CheckIdentity)
	if c == nil || c.Status != jobs.StatusSkip || c.Reason != "not judged: the job failed before the inspection ended" {
		t.Fatalf("identity = %+v", c)
	}
}

// A job skipping identity and hygiene has no inspection.
func TestInspectionSkippedByJob(t *testing.T) {
	addr, key := sshServerKey(t)
	hv := &fake.Hypervisor{SSHAddr: addr, Console: keysBlock(key)}
	job := debian12Job("noinspect")
	job.Checks.Skip = append(job.Checks.Skip, jobs.CheckIdentity, jobs.CheckHygiene)
	res, _ := runInspected(t, hv, job, func(context.Context, string, string, inspect.Config) *jobs.Inspection {
		t.Error("inspected although the job skips identity and hygiene")
		return &jobs.Inspection{}
	})
	if c := res.Check(jobs.CheckHygiene); c == nil || c.Reason != "skipped by the job" {
		t.Errorf("hygiene %+v", c)
	}
	if c := res.Check(jobs.CheckIdentity); res.Verdict != jobs.VerdictPass || c == nil || c.Reason != "skipped by the job" || res.Inspection != nil {
		t.Fatalf("got %s, identity %+v, inspection %+v", res.Verdict, c, res.Inspection)
	}
}

// An inspection that runs out of its time on the worker leaves identity and
// hygiene unjudged: the job ends in a retryable error naming the bound, never a
// pass of an image nobody looked inside.
func TestInspectionOutOfTimeIsWorkersError(t *testing.T) {
	addr, key := sshServerKey(t)
	hv := &fake.Hypervisor{SSHAddr: addr, Console: keysBlock(key)}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	r.cfg.InspectTimeout = time.Second
	r.inspect = factsAfter(t, time.Hour, jobs.Inspection{})
	job := debian12Job("inspect-timeout")
	job.Checks.Required = nil // every check required, identity and hygiene too
	res := r.Run(context.Background(), job, 1, nil)
	assertCleanedUp(t, cfg, hv)
	want := "not judged: the inspection could not finish on this worker: did not finish within 1s (--inspect-timeout, scaled under TCG): guestfish inspect-os: context deadline exceeded"
	if res.Verdict != jobs.VerdictError || !res.Retryable || res.FailedCheck != jobs.CheckIdentity || res.Reason != want {
		t.Fatalf("got %s/%s retryable=%v %q, want a retryable error: %q", res.Verdict, res.FailedCheck, res.Retryable, res.Reason, want)
	}
	if c := res.Check(jobs.CheckHygiene); c == nil || c.Status != jobs.StatusError {
		t.Fatalf("hygiene = %+v, want error", c)
	}
}

// An image libguestfs reads and finds no operating system in is the image's
// own answer: identity and hygiene skip with it, and the boot decides.
func TestInspectionNoOSSkips(t *testing.T) {
	addr, key := sshServerKey(t)
	hv := &fake.Hypervisor{SSHAddr: addr, Console: keysBlock(key)}
	noOS := jobs.Inspection{Error: "no operating system found (2 file systems)", Fault: jobs.FaultImage}
	job := debian12Job("inspect-noos")
	job.Checks.Required = nil
	res, _ := runInspected(t, hv, job, factsAfter(t, 0, noOS))
	if res.Verdict != jobs.VerdictPass {
		t.Fatalf("got %s/%s %q, want pass", res.Verdict, res.FailedCheck, res.Reason)
	}
	for _, name := range []string{jobs.CheckIdentity, jobs.CheckHygiene} {
		if c := res.Check(name); c == nil || c.Status != jobs.StatusSkip || !strings.Contains(c.Reason, "no operating system found") {
			t.Errorf("%s = %+v, want a skip with the inspection's answer", name, c)
		}
	}
}
