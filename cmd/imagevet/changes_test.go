package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/queue/queuetest"
)

// `imagevet status IMAGE` says in one line what changed since the family's previous
// release, then each regression.
func TestStatusSaysWhatChangedSinceThePreviousRelease(t *testing.T) {
	url := queuetest.Server(t)
	q, _ := queuetest.On(t, url)
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	release := func(id, version string, boot time.Duration, size int64, kernel string, pkgs ...jobs.Package) jobs.Result {
		return jobs.Result{Version: jobs.Version, JobID: id, Verdict: jobs.VerdictPass, Worker: "w", Attempt: 1, Accel: "tcg",
			Checks: []jobs.CheckResult{{Name: jobs.CheckBoot, Status: jobs.StatusPass, Required: true}},
			Stages: []jobs.Stage{{Name: "boot", Start: start, Duration: jobs.Duration(time.Second)},
				{Name: "ssh", Start: start.Add(time.Second), Duration: jobs.Duration(boot - time.Second)}},
			ImageFacts: &jobs.ImageFacts{Format: "qcow2", Size: size, VirtualSize: 3 << 30},
			Inspection: &jobs.Inspection{Kernels: []string{kernel}, Packages: pkgs},
			Publish:    jobs.Publication{Name: "Debian 12", Family: "debian-12", Release: version},
			StartedAt:  start, FinishedAt: start.Add(2 * time.Minute)}
	}
	prev := release("d12-1110", "20261110-1", 40*time.Second, 400<<20, "6.1.0-27-cloud-amd64",
		jobs.Package{Name: "libc6", Version: "2.36-9+deb12u7", Arch: "amd64"},
		jobs.Package{Name: "linux-image-6.1.0-27-cloud-amd64", Version: "6.1.115-1", Arch: "amd64"})
	cur := release("d12-1120", "20261120-1", 54*time.Second, 416<<20, "6.1.0-28-cloud-amd64",
		jobs.Package{Name: "libc6", Version: "2.36-9+deb12u9", Arch: "amd64"},
		jobs.Package{Name: "linux-image-6.1.0-28-cloud-amd64", Version: "6.1.119-1", Arch: "amd64"},
		jobs.Package{Name: "zstd", Version: "1.5.4+dfsg2-5", Arch: "amd64"})
	inspect.Attach(&cur, prev, jobs.Regression{})
	for _, r := range []jobs.Result{prev, cur} {
		if _, err := q.PublishResult(context.Background(), r, nil); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runCmd(t, cmdStatus, "--nats", url, "Debian 12")
	if code != exitPass {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"\nsince 20261110-1: +2 −1 ~1 packages, kernel 6.1.0-27-cloud-amd64 → 6.1.0-28-cloud-amd64, size +4 %, boot +35 % (regression)\n" +
			"  regression: boot time 40s → 54s (+35 %, beyond the family's 30 %)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if _, out, _ := runCmd(t, cmdStatus, "--nats", url, "--job", "d12-1110"); strings.Contains(out, "since ") {
		t.Errorf("the family's first release says what changed:\n%s", out)
	}
}
