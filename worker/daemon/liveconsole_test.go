package daemon

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// The console so far a runner sends goes to the job's page (the live consoles
// bucket, under the daemon's attempt and worker), not to the job's followers.
func TestConsoleSoFarGoesToThePageNotTheFollowers(t *testing.T) {
	url := startServer(t)
	q, _ := openQueue(t, url)
	var mu sync.Mutex
	var followed []jobs.Progress
	stop, err := q.FollowProgress("live-con", func(p jobs.Progress) {
		mu.Lock()
		followed = append(followed, p)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	release := make(chan struct{})
	r := newFake(func(ctx context.Context, job jobs.Job, _ int, progress func(jobs.Progress)) jobs.Result {
		progress(jobs.Progress{Stage: "console", Event: jobs.EventConsole, Console: &jobs.LiveConsole{Tail: "SeaBIOS\nLinux version 6.1",
			Marks: []jobs.ConsoleMark{{Kind: jobs.MarkMilestone, Name: "kernel", Line: "Linux version 6.1"}}}})
		select {
		case <-release:
		case <-ctx.Done():
		}
		return passResult()
	})
	startDaemon(t, fastConfig(url, "w1"), r)
	submit(t, q, testJob("live-con"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, ok, err := q.LiveConsole(context.Background(), "live-con")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if c.JobID != "live-con" || c.Attempt != 1 || c.Worker != "w1" || c.Tail != "SeaBIOS\nLinux version 6.1" || len(c.Marks) != 1 {
				t.Errorf("live console %+v", c)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no live console recorded")
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(release)
	wait(t, q, "live-con")
	stop()
	mu.Lock()
	defer mu.Unlock()
	for _, p := range followed {
		if p.Event == jobs.EventConsole || p.Console != nil {
			t.Errorf("a follower got the console: %+v", p)
		}
	}
	if len(followed) == 0 {
		t.Error("the follower got no progress at all")
	}
}
