package daemon

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// The daemon compares a family's new release with its last vetted one before it
// reports: the changes ride on the result, a regression is a warning, the pass
// stays a pass.
func TestDaemonAttachesChangesSinceThePreviousRelease(t *testing.T) {
	url := startServer(t)
	q, _ := openQueue(t, url)
	ctx := context.Background()

	start := time.Now().UTC().Add(-time.Hour)
	vetted := func(id, release string, boot time.Duration, libc string) jobs.Result {
		return jobs.Result{Version: jobs.Version, JobID: id, Verdict: jobs.VerdictPass, Worker: "w", Attempt: 1,
			Checks: []jobs.CheckResult{{Name: jobs.CheckBoot, Status: jobs.StatusPass, Required: true}},
			Stages: []jobs.Stage{
				{Name: "boot", Start: start, Duration: jobs.Duration(time.Second)},
				{Name: "ssh", Start: start.Add(time.Second), Duration: jobs.Duration(boot - time.Second)},
			},
			ImageFacts: &jobs.ImageFacts{Size: 330 << 20, VirtualSize: 3 << 30},
			Inspection: &jobs.Inspection{Distro: "debian", Version: "12", Kernels: []string{"6.1.0-28-cloud-amd64"},
				Packages: []jobs.Package{{Name: "libc6", Version: libc, Arch: "amd64"}}},
			Publish:   jobs.Publication{Name: "Debian 12", Family: "debian-12", Release: release},
			StartedAt: start, FinishedAt: start.Add(2 * time.Minute)}
	}
	if _, err := q.PublishResult(ctx, vetted("d12-1110", "20261110-1", 40*time.Second, "2.36-9+deb12u7"), nil); err != nil {
		t.Fatal(err)
	}

	r := newFake(func(_ context.Context, job jobs.Job, _ int, _ func(jobs.Progress)) jobs.Result {
		res := vetted(job.ID, job.Publish.Release, 60*time.Second, "2.36-9+deb12u9")
		res.Publish = jobs.Publication{}
		return res
	})
	startDaemon(t, fastConfig(url, "w1"), r)

	job := testJob("d12-1120")
	job.Publish = jobs.Publication{Name: "Debian 12", Family: "debian-12", Release: "20261120-1"}
	submit(t, q, job)
	res := wait(t, q, job.ID)
	if res.Verdict != jobs.VerdictPass {
		t.Fatalf("verdict %s: %s", res.Verdict, res.Reason)
	}
	if res.Inspection == nil || res.Inspection.Changes == nil {
		t.Fatalf("no changes on the result: %+v", res.Inspection)
	}
	ch := res.Inspection.Changes
	if ch.PreviousJob != "d12-1110" || ch.PreviousVersion != "20261110-1" {
		t.Errorf("compared with %s (%s), want d12-1110 (20261110-1)", ch.PreviousJob, ch.PreviousVersion)
	}
	if want := []jobs.Upgrade{{Name: "libc6", Arch: "amd64", Before: "2.36-9+deb12u7", After: "2.36-9+deb12u9"}}; !slices.Equal(ch.Upgraded, want) {
		t.Errorf("upgraded %+v, want %+v", ch.Upgraded, want)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "boot time 40s → 1m0s (+50 %") {
		t.Errorf("warnings %q, want the boot time regression", res.Warnings)
	}

	// A family's first release, and a family that allows a slower boot.
	first := testJob("d13-1120")
	first.Publish = jobs.Publication{Name: "Debian 13", Family: "debian-13", Release: "20261120-1"}
	submit(t, q, first)
	if res := wait(t, q, first.ID); res.Inspection == nil || res.Inspection.Changes != nil || len(res.Warnings) != 0 {
		t.Errorf("first release of its family: inspection %+v, warnings %q", res.Inspection, res.Warnings)
	}
	lenient := testJob("d12-1121")
	lenient.Publish = jobs.Publication{Name: "Debian 12", Family: "debian-12", Release: "20261121-1"}
	lenient.Regression = jobs.Regression{BootPercent: 60}
	submit(t, q, lenient)
	res = wait(t, q, lenient.ID)
	if res.Inspection == nil || res.Inspection.Changes == nil || res.Inspection.Changes.PreviousJob != "d12-1120" {
		t.Fatalf("not compared with the family's last pass d12-1120: %+v", res.Inspection)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %q within the family's 60 %%", res.Warnings)
	}
}

// stubPrevious answers PreviousRelease with a fixed result or error, counting calls.
type stubPrevious struct {
	prev  jobs.Result
	found bool
	err   error
	calls int
}

func (s *stubPrevious) PreviousRelease(context.Context, string, string, string) (jobs.Result, bool, error) {
	s.calls++
	return s.prev, s.found, s.err
}

// compare looks up only for a verdict of a family's job, and a failed look-up or a
// first release leaves the result as the runner made it.
func TestCompareOnlyJudgedFamilyReleases(t *testing.T) {
	prev := jobs.Result{JobID: "d12-1110", Publish: jobs.Publication{Family: "debian-12", Release: "20261110-1"},
		ImageFacts: &jobs.ImageFacts{Size: 100}}
	family := jobs.Publication{Family: "debian-12", Release: "20261120-1"}
	cases := []struct {
		name     string
		verdict  jobs.Verdict
		pub      jobs.Publication
		stub     stubPrevious
		calls    int
		compared bool
		warnings int
	}{
		{"a pass with a previous release", jobs.VerdictPass, family, stubPrevious{prev: prev, found: true}, 1, true, 1},
		{"a fail is compared too", jobs.VerdictFail, family, stubPrevious{prev: prev, found: true}, 1, true, 1},
		{"an error judged nothing", jobs.VerdictError, family, stubPrevious{prev: prev, found: true}, 0, false, 0},
		{"no family", jobs.VerdictPass, jobs.Publication{Name: "x"}, stubPrevious{prev: prev, found: true}, 0, false, 0},
		{"the family's first release", jobs.VerdictPass, family, stubPrevious{}, 1, false, 0},
		{"the queue cannot be read", jobs.VerdictPass, family, stubPrevious{err: errors.New("nats: timeout")}, 1, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			job := testJob("d12-1120")
			job.Publish = c.pub
			res := jobs.Result{JobID: job.ID, Verdict: c.verdict, ImageFacts: &jobs.ImageFacts{Size: 200}}
			stub := c.stub
			compare(context.Background(), &stub, &res, job.WithDefaults(), slog.New(slog.DiscardHandler))
			if stub.calls != c.calls {
				t.Errorf("%d look-ups, want %d", stub.calls, c.calls)
			}
			if got := res.Inspection != nil && res.Inspection.Changes != nil; got != c.compared {
				t.Errorf("compared %v, want %v", got, c.compared)
			}
			if len(res.Warnings) != c.warnings {
				t.Errorf("warnings %q, want %d (image size doubled)", res.Warnings, c.warnings)
			}
		})
	}
}
