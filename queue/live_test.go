package queue

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// Progress sent on core NATS is stored too: a page opened mid-job reads the story
// so far, one job's events only, in order; the live console is the latest one.
func TestProgressIsReplayedAndTheLiveConsoleKept(t *testing.T) {
	q, _ := testQueue(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if got, err := q.ProgressOf(ctx, "mid-1"); err != nil || len(got) != 0 {
		t.Fatalf("progress of a job without any: %v %v", got, err)
	}
	for i := range 700 { // more than one fetch
		for _, id := range []string{"mid-1", "other"} {
			if err := q.PublishProgress(jobs.Progress{JobID: id, Attempt: 1, Worker: "w1", Stage: "fetch", Event: "info", Message: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []jobs.Progress
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 700 && time.Now().Before(deadline) {
		var err error
		if got, err = q.ProgressOf(ctx, "mid-1"); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 700 {
		t.Fatalf("replayed %d events, want 700", len(got))
	}
	for i, p := range got {
		if p.JobID != "mid-1" || p.Message != fmt.Sprint(i) {
			t.Fatalf("event %d: %+v", i, p)
		}
	}
	if _, err := q.ProgressOf(ctx, "a.b"); err == nil {
		t.Error("an invalid job id was read")
	}

	if _, ok, err := q.LiveConsole(ctx, "mid-1"); ok || err != nil {
		t.Fatalf("live console before any: %v %v", ok, err)
	}
	for _, tail := range []string{"SeaBIOS", "SeaBIOS\nLinux version 6.1"} {
		if err := q.PutLiveConsole(ctx, jobs.LiveConsole{JobID: "mid-1", Attempt: 1, Worker: "w1", Tail: tail,
			Marks: []jobs.ConsoleMark{{Kind: jobs.MarkMilestone, Name: "firmware", Line: "SeaBIOS"}}}); err != nil {
			t.Fatal(err)
		}
	}
	c, ok, err := q.LiveConsole(ctx, "mid-1")
	if err != nil || !ok || c.Tail != "SeaBIOS\nLinux version 6.1" || len(c.Marks) != 1 {
		t.Fatalf("live console: %+v %v %v", c, ok, err)
	}
}

// A job's state entries are read by its id alone; another job's are not among them.
func TestJobStatesOf(t *testing.T) {
	q, _ := testQueue(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if got, err := q.JobStatesOf(ctx, "st-1"); err != nil || len(got) != 0 {
		t.Fatalf("states of a job never claimed: %v %v", got, err)
	}
	for _, id := range []string{"st-1", "st-10"} {
		if _, _, err := q.ClaimAttempt(ctx, id, 7, "img-"+id, "host-a", 0, 3); err != nil {
			t.Fatal(err)
		}
	}
	got, err := q.JobStatesOf(ctx, "st-1")
	if err != nil || len(got) != 1 || got[0].JobID != "st-1" || got[0].State != StateRunning || got[0].Worker != "host-a" || got[0].Seq != 7 {
		t.Fatalf("states of st-1: %+v %v", got, err)
	}
}
