package web

import (
	"fmt"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// The index is our own logic over documents: fed here by hand.
func TestIndexKeepsHistoryAndForgetsSilentJobs(t *testing.T) {
	x := NewIndex()
	// Recent results: the index remembers finished jobs for doneWindow.
	base := time.Now().Add(-doneWindow / 2).Truncate(time.Second)
	for i := range HistoryLen + 5 {
		// Out of order by one: the strip stays in finish order.
		at := base.Add(time.Duration(i) * time.Minute)
		if i%2 == 1 {
			at = at.Add(-90 * time.Second)
		}
		x.Add(passResult("j-"+string(rune('a'+i)), "img", at))
	}
	im := x.Images()
	if len(im) != 1 || len(im[0].Runs) != HistoryLen {
		t.Fatalf("images %+v", im)
	}
	for i := 1; i < len(im[0].Runs); i++ {
		if im[0].Runs[i].Finished.Before(im[0].Runs[i-1].Finished) {
			t.Fatalf("history out of order at %d", i)
		}
	}
	x.Progress(jobs.Progress{JobID: "live", Worker: "w2", Attempt: 1, Stage: "boot", Event: "start", Time: base})
	x.Progress(jobs.Progress{JobID: "j-a", Worker: "w2", Attempt: 1, Stage: "cleanup", Event: "done", Time: base})
	if a := x.Active(base.Add(time.Minute)); len(a) != 1 || a[0].JobID != "live" || a[0].Stage != "boot" {
		t.Fatalf("active %+v (a late event of a finished job must not count)", a)
	}
	if w := x.Workers(base.Add(time.Minute)); len(w) != 2 || w[1].ID != "w2" || len(w[1].Running) != 1 {
		t.Fatalf("workers %+v", w)
	}
	if a := x.Active(base.Add(ForgetActiveAfter + time.Minute)); len(a) != 0 {
		t.Errorf("a job silent for over %s is still active: %+v", ForgetActiveAfter, a)
	}
}

// A rerun's events (newer than the job's last result) make it running again, and
// the index forgets finished jobs past its window instead of growing with the
// results stream.
func TestIndexShowsRerunsAndForgetsOldResults(t *testing.T) {
	x := NewIndex()
	now := time.Now()
	x.Add(passResult("again", "img", now.Add(-time.Minute)))
	x.Progress(jobs.Progress{JobID: "again", Worker: "w1", Attempt: 2, Stage: "boot", Event: "start", Time: now})
	if a := x.Active(now); len(a) != 1 || a[0].JobID != "again" || a[0].Attempt != 2 {
		t.Fatalf("a rerun's progress is not shown: %+v", a)
	}
	old := now.Add(-2 * doneWindow)
	for i := range 20000 {
		x.Add(passResult(fmt.Sprintf("old-%d", i), "img", old))
	}
	x.mu.RLock()
	n := len(x.done)
	x.mu.RUnlock()
	if n > 10001 {
		t.Errorf("the index remembers %d finished jobs; want those of the last %s only", n, doneWindow)
	}
}

// A late event of an older attempt, arriving after the job was delivered again,
// leaves the newer attempt's worker, start time, stage and latest event as they were.
func TestIndexIgnoresLateEventsOfAnOlderAttempt(t *testing.T) {
	x := NewIndex()
	t0 := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	x.Progress(jobs.Progress{JobID: "j", Worker: "w1", Attempt: 1, Stage: "boot", Event: "start", Time: t0})
	x.Progress(jobs.Progress{JobID: "j", Worker: "w2", Attempt: 2, Stage: "fetch", Event: "start", Time: t0.Add(time.Minute)})
	x.Progress(jobs.Progress{JobID: "j", Worker: "w2", Attempt: 2, Stage: "fetch", Event: "done", Time: t0.Add(2 * time.Minute)})
	// The first worker, cut off, still reports its boot.
	x.Progress(jobs.Progress{JobID: "j", Worker: "w1", Attempt: 1, Stage: "boot", Event: "fail", Message: "late", Time: t0.Add(3 * time.Minute)})
	a := x.Active(t0.Add(4 * time.Minute))
	want := Active{JobID: "j", Worker: "w2", Attempt: 2, Stage: "fetch", Event: "done", Since: t0.Add(time.Minute), LastEvent: t0.Add(2 * time.Minute)}
	if len(a) != 1 || a[0] != want {
		t.Fatalf("active %+v, want %+v", a, want)
	}
	// The late event still says the first worker is alive.
	if w := x.Workers(t0.Add(4 * time.Minute)); len(w) != 2 || w[0].ID != "w1" || !w[0].LastSeen.Equal(t0.Add(3*time.Minute)) || len(w[0].Running) != 0 {
		t.Errorf("workers %+v", w)
	}
}
