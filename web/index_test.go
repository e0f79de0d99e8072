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
