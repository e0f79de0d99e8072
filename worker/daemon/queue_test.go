package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"

	"github.com/imagevet/imagevet/queue"
)

// started waits until r started a job.
func started(t *testing.T, r *fakeRunner) {
	t.Helper()
	select {
	case <-r.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the job never started")
	}
}

// hang is a fake runner that blocks like a machine that lost power until its
// context ends.
func hang(block <-chan struct{}) *fakeRunner {
	return newFake(func(ctx context.Context, _ jobs.Job, _ int, _ func(jobs.Progress)) jobs.Result {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return errorResult("cancelled", true)
	})
}

func TestWorkerDyingOnTheLastAttemptStillEndsInOneResult(t *testing.T) {
	url := startServer(t)
	cfg := fastConfig(url, "dying")
	cfg.MaxDeliver, cfg.GracePeriod = 1, 10*time.Millisecond
	ncA := connect(t, url)
	block := make(chan struct{})
	defer close(block)
	dying := hang(block)
	a := startDaemonOn(t, ncA, cfg, dying)
	q, nc := openQueue(t, url)
	if q.Settings().MaxDeliver != 1 {
		t.Fatalf("queue settings %+v", q.Settings())
	}
	submit(t, q, testJob("last"))
	started(t, dying)
	ncA.Close() // killed on its only allowed attempt

	healthy := newFake(nil)
	startDaemon(t, fastConfig(url, "healthy"), healthy)
	res := wait(t, q, "last")
	if res.Verdict != jobs.VerdictError || !res.Retryable || res.Worker != "healthy" ||
		!strings.Contains(res.Reason, "gave up after 1 attempts: attempt 1 on worker dying ended without a result") {
		t.Fatalf("%+v", res)
	}
	a.stop(t)
	if n := healthy.callsOf("last"); n != 0 {
		t.Errorf("the job ran %d more times beyond its limit", n)
	}
	eventually(t, 5*time.Second, "the job to leave the queue", func() bool {
		queued, results := streamState(t, nc)
		return queued == 0 && results == 1
	})
}

func TestWorkersAndRunningJobsAreListed(t *testing.T) {
	url := startServer(t)
	block := make(chan struct{})
	r := hang(block)
	cfg := fastConfig(url, "w1")
	cfg.Version, cfg.Accel, cfg.AccelReason = "v1.2", "tcg", "tcg requested"
	startDaemon(t, cfg, r)
	q, _ := openQueue(t, url)
	submit(t, q, testJob("busy"))
	submit(t, q, testJob("busy2"))
	submit(t, q, testJob("waiting"))
	ctx := context.Background()
	var list []queue.QueueEntry
	eventually(t, 10*time.Second, "two running jobs listed", func() bool {
		list, _ = q.Jobs(ctx)
		n := 0
		for _, j := range list {
			if j.State == queue.StateRunning && j.Stage == "boot" {
				n++
			}
		}
		return n == 2
	})
	byID := map[string]queue.QueueEntry{}
	for _, j := range list {
		byID[j.JobID] = j
	}
	if b := byID["busy"]; b.Worker != "w1" || !b.WorkerAlive || b.Attempt != 1 || b.StartedAt.IsZero() {
		t.Errorf("running job %+v", b)
	}
	if w := byID["waiting"]; w.State != queue.StateQueued || w.Worker != "" {
		t.Errorf("queued job %+v", w)
	}
	var ws []queue.WorkerInfo
	eventually(t, 15*time.Second, "the heartbeat to list both running jobs", func() bool {
		ws, _ = q.Workers(ctx)
		return len(ws) == 1 && len(ws[0].Running) == 2
	})
	if w := ws[0]; w.ID != "w1" || w.Slots != 2 || w.Version != "v1.2" || w.Accel != "tcg" || w.AccelReason != "tcg requested" || w.PID == 0 {
		t.Errorf("worker %+v", w)
	}
	close(block)
}

func TestCancelStopsARunningJobWithOneResult(t *testing.T) {
	url := startServer(t)
	r := hang(nil)
	startDaemon(t, fastConfig(url, "w1"), r)
	q, nc := openQueue(t, url)
	submit(t, q, testJob("stopme"))
	started(t, r)
	ctx := context.Background()
	out, err := q.Cancel(ctx, "stopme", "ops@example", "")
	if err != nil || !out.Cancelled || !out.WasRunning {
		t.Fatalf("%+v %v", out, err)
	}
	eventually(t, 5*time.Second, "the runner to stop", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.running == 0
	})
	time.Sleep(300 * time.Millisecond)
	res, _, _ := q.Result(ctx, "stopme")
	if res.Verdict != jobs.VerdictError || res.Reason != "cancelled by ops@example" || res.Attempt != 1 {
		t.Errorf("result %+v", res)
	}
	queued, results := streamState(t, nc)
	if queued != 0 || results != 1 {
		t.Errorf("queued %d results %d", queued, results)
	}
}

func TestWorkersFollowTheQueueSettings(t *testing.T) {
	url := startServer(t)
	q, _ := openQueue(t, url) // ack wait 3s, max deliver 3
	cfg := fastConfig(url, "other-flags")
	cfg.AckWait, cfg.MaxDeliver = 90*time.Second, 9
	d := startDaemon(t, cfg, newFake(nil))
	if d.d.ackWait != 3*time.Second || d.d.maxDeliver != 3 {
		t.Errorf("worker uses ack wait %s, max deliver %d; the queue says 3s and 3", d.d.ackWait, d.d.maxDeliver)
	}
	if st := q.Settings(); st.SetBy != "test" {
		t.Errorf("settings %+v", st)
	}
}

func TestRerunRunsAgainAsTheNextAttempt(t *testing.T) {
	url := startServer(t)
	r := newFake(nil)
	startDaemon(t, fastConfig(url, "w1"), r)
	q, _ := openQueue(t, url)
	submit(t, q, testJob("again"))
	if res := wait(t, q, "again"); res.Attempt != 1 {
		t.Fatalf("%+v", res)
	}
	ctx := context.Background()
	if _, err := q.Rerun(ctx, testJob("again")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the rerun's result", func() bool {
		res, _, _ := q.Result(ctx, "again")
		return res.Attempt == 2
	})
	if n := r.callsOf("again"); n != 2 {
		t.Errorf("ran %d times, want 2", n)
	}
}
