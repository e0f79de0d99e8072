package queue

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

func TestFollowResultsReplaysThenFollows(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	now := time.Now().UTC()
	for i, id := range []string{"r-1", "r-2"} {
		if _, err := q.PublishResult(ctx, sampleResult(id, jobs.VerdictPass, now.Add(time.Duration(i)*time.Second)), nil); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var seen []string
	var caughtUp []int // how many results fn had seen when caughtUp was called
	got := make(chan struct{}, 10)
	stop, err := q.FollowResults(ctx, func(r jobs.Result) {
		mu.Lock()
		seen = append(seen, r.JobID)
		mu.Unlock()
		got <- struct{}{}
	}, func() {
		mu.Lock()
		caughtUp = append(caughtUp, len(seen))
		mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	wait := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-got:
			case <-time.After(5 * time.Second):
				t.Fatalf("results seen: %v", seen)
			}
		}
	}
	wait(2)
	// caughtUp comes right after fn returns from the last replayed result.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(caughtUp)
		mu.Unlock()
		if n > 0 {
			break
		}
	}
	mu.Lock()
	if strings.Join(seen, ",") != "r-1,r-2" || len(caughtUp) != 1 || caughtUp[0] != 2 {
		t.Errorf("replay: %v caught up %v", seen, caughtUp)
	}
	mu.Unlock()
	if _, err := q.PublishResult(ctx, sampleResult("r-3", jobs.VerdictFail, now.Add(time.Minute)), nil); err != nil {
		t.Fatal(err)
	}
	wait(1)
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "r-1,r-2,r-3" || len(caughtUp) != 1 {
		t.Errorf("live: %v, caught up %v", seen, caughtUp)
	}
}

func TestFollowResultsOfAnEmptyStreamIsCaughtUpAtOnce(t *testing.T) {
	q, _ := testQueue(t)
	up := make(chan struct{})
	stop, err := q.FollowResults(context.Background(), func(jobs.Result) {}, func() { close(up) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case <-up:
	case <-time.After(5 * time.Second):
		t.Fatal("never caught up with an empty stream")
	}
}

func TestFollowAllProgressSeesEveryJob(t *testing.T) {
	q, _ := testQueue(t)
	got := make(chan jobs.Progress, 4)
	stop, err := q.FollowAllProgress(func(p jobs.Progress) { got <- p })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for _, id := range []string{"p-1", "p-2"} {
		if err := q.PublishProgress(jobs.Progress{JobID: id, Stage: "boot", Event: "start", Worker: "w1"}); err != nil {
			t.Fatal(err)
		}
	}
	ids := map[string]bool{}
	for range 2 {
		select {
		case p := <-got:
			ids[p.JobID] = p.Worker == "w1" && p.Stage == "boot"
		case <-time.After(5 * time.Second):
			t.Fatalf("progress seen: %v", ids)
		}
	}
	if !ids["p-1"] || !ids["p-2"] {
		t.Errorf("progress seen: %v", ids)
	}
}
