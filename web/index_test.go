package web

import (
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// The index is our own logic over documents: fed here by hand.
func TestIndexKeepsHistoryAndForgetsSilentJobs(t *testing.T) {
	x := NewIndex()
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
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
