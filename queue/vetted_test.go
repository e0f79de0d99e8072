package queue

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

func TestPreviousReleasePrefersTheLastPass(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	report := func(id, family, release string, v jobs.Verdict, days int) jobs.Result {
		t.Helper()
		r := jobs.Result{JobID: id, Verdict: v, Checks: []jobs.CheckResult{}, Stages: []jobs.Stage{}, Worker: "w", Attempt: 1,
			Publish:   jobs.Publication{Name: "Debian 12", Family: family, Release: release},
			StartedAt: at.AddDate(0, 0, days), FinishedAt: at.AddDate(0, 0, days).Add(time.Minute)}
		if _, err := q.PublishResult(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
		return r
	}
	previous := func(family, release, jobID string) (string, bool) {
		t.Helper()
		r, ok, err := q.PreviousRelease(ctx, family, release, jobID)
		if err != nil {
			t.Fatal(err)
		}
		return r.JobID, ok
	}

	// Before any verdict the bucket does not exist: none, no error.
	if id, ok := previous("debian-12", "20261120-1", "d12-1120"); ok {
		t.Fatalf("before any verdict: %s", id)
	}
	report("d12-1101", "debian-12", "20261101-1", jobs.VerdictPass, 0)
	report("d12-1110", "debian-12", "20261110-1", jobs.VerdictPass, 9)
	report("d12-1115", "debian-12", "20261115-1", jobs.VerdictFail, 14)
	report("d13-1116", "debian-13", "20261116-1", jobs.VerdictPass, 15)
	report("d12-error", "debian-12", "20261117-1", jobs.VerdictError, 16) // nothing judged
	report("nofamily", "", "", jobs.VerdictPass, 17)

	for _, c := range []struct {
		name, family, release, job, want string
	}{
		{"the newest pass, not the newer fail", "debian-12", "20261120-1", "d12-1120", "d12-1110"},
		{"not the same release", "debian-12", "20261110-1", "d12-1110-respin", "d12-1101"},
		{"not itself (a rerun)", "debian-12", "", "d12-1110", "d12-1101"},
		{"another family's own", "debian-13", "20261130-1", "d13-1130", "d13-1116"},
	} {
		if id, ok := previous(c.family, c.release, c.job); !ok || id != c.want {
			t.Errorf("%s: %q (found %v), want %q", c.name, id, ok, c.want)
		}
	}
	if id, ok := previous("ubuntu-24.04", "x", "u"); ok {
		t.Errorf("a family without verdicts: %s", id)
	}
	if id, ok := previous("", "", "nofamily-2"); ok {
		t.Errorf("no family: %s", id)
	}

	// A family with failures only compares with its newest failure.
	report("cirros-1", "cirros", "0.6.2", jobs.VerdictFail, 1)
	report("cirros-2", "cirros", "0.6.3", jobs.VerdictFail, 2)
	if id, ok := previous("cirros", "0.6.4", "cirros-3"); !ok || id != "cirros-2" {
		t.Errorf("only failures: %q (found %v), want cirros-2", id, ok)
	}

	// A worker that finds a job reported already records it again only once.
	r, _, _ := q.Result(ctx, "d12-1110")
	if err := q.EnsureStatus(ctx, r); err != nil {
		t.Fatal(err)
	}
	kv, err := q.vettedBucket(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	known, err := vettedOf(ctx, kv, "debian-12")
	if err != nil {
		t.Fatal(err)
	}
	if len(known) != 3 || known[1].JobID != "d12-1110" || known[1].Release != "20261110-1" {
		t.Errorf("debian-12's verdicts: %+v", known)
	}

	// A rerun that replaced d12-1110's pass with a failure leaves 1101 the last pass.
	old, seq, _, err := q.ResultSeq(ctx, "d12-1110")
	if err != nil {
		t.Fatal(err)
	}
	rerun := old
	rerun.Verdict, rerun.Attempt, rerun.FinishedAt = jobs.VerdictFail, 2, old.FinishedAt.AddDate(0, 0, 20)
	if ok, err := q.PublishResult(ctx, rerun, nil, Replacing(seq)); err != nil || !ok {
		t.Fatalf("rerun: published=%v err=%v", ok, err)
	}
	if id, ok := previous("debian-12", "20261201-1", "d12-1201"); !ok || id != "d12-1101" {
		t.Errorf("after the rerun: %q (found %v), want d12-1101", id, ok)
	}
}

// BenchmarkPreviousRelease: the look-up a worker makes before it reports a
// family's verdict, with the family's whole kept history (VettedHistory verdicts).
func BenchmarkPreviousRelease(b *testing.B) {
	q, _ := testQueue(b)
	ctx := context.Background()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range VettedHistory {
		v := jobs.VerdictPass
		if i%3 == 0 {
			v = jobs.VerdictFail
		}
		r := jobs.Result{JobID: fmt.Sprintf("d12-%03d", i), Verdict: v, Checks: []jobs.CheckResult{}, Stages: []jobs.Stage{}, Worker: "w", Attempt: 1,
			Publish:   jobs.Publication{Name: "Debian 12", Family: "debian-12", Release: fmt.Sprintf("2026%03d", i)},
			StartedAt: at.Add(time.Duration(i) * time.Hour), FinishedAt: at.Add(time.Duration(i)*time.Hour + time.Minute)}
		if _, err := q.PublishResult(ctx, r, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, ok, err := q.PreviousRelease(ctx, "debian-12", "2026999", "d12-999"); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
