package queue

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
)

func sampleJob(id string) jobs.Job {
	return jobs.Job{Version: jobs.Version, ID: id,
		Image: jobs.ImageSpec{Source: "file:///srv/" + id + ".qcow2", Format: jobs.FormatQCOW2,
			Checksum: "sha256:" + strings.Repeat("0", 64)},
		Guest:   jobs.GuestSpec{User: "debian"},
		Publish: jobs.Publication{Name: "debian-12"},
	}
}

func TestAttemptsAreCountedPerSubmissionUpToTheLimit(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	for want := 1; want <= 3; want++ {
		st, exhausted, err := q.ClaimAttempt(ctx, "j1", 7, "debian-12", "w1", 0, 3)
		if err != nil || exhausted || st.Attempts != want || st.Attempt != want || st.State != StateRunning {
			t.Fatalf("claim %d: %+v exhausted=%v err=%v", want, st, exhausted, err)
		}
		if want == 2 && !strings.Contains(st.LastError, "worker w1") {
			t.Errorf("a redelivered running attempt should say who lost it: %q", st.LastError)
		}
	}
	st, exhausted, err := q.ClaimAttempt(ctx, "j1", 7, "debian-12", "w2", 0, 3)
	if err != nil || !exhausted || st.Attempts != 3 || st.Worker != "w1" {
		t.Fatalf("fourth claim: %+v exhausted=%v err=%v", st, exhausted, err)
	}
	// Another submission (a rerun) counts on its own, continuing the attempt numbers.
	st, exhausted, err = q.ClaimAttempt(ctx, "j1", 9, "debian-12", "w2", 3, 3)
	if err != nil || exhausted || st.Attempt != 4 {
		t.Fatalf("rerun claim: %+v %v %v", st, exhausted, err)
	}
	if err := q.ForgetJobState(ctx, "j1", 7); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := q.ClaimAttempt(ctx, "j1", 7, "", "w3", 0, 3); st.Attempts != 1 {
		t.Errorf("after forget: %+v", st)
	}
}

func TestJobsListsQueuedAndRunningWithWorkers(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := q.Submit(ctx, sampleJob(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.PutWorker(ctx, WorkerInfo{ID: "w1", Host: "h", Slots: 2, Running: []string{"a"}, Version: "v"}); err != nil {
		t.Fatal(err)
	}
	list, err := q.Jobs(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("%+v %v", list, err)
	}
	st, _, err := q.ClaimAttempt(ctx, "a", list[0].Seq, "debian-12", "w1", 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	st.Stage = "boot"
	if err := q.PutJobState(ctx, st); err != nil {
		t.Fatal(err)
	}
	list, err = q.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b := list[0], list[1]
	if a.JobID != "a" || a.State != StateRunning || a.Stage != "boot" || a.Attempt != 1 || a.Worker != "w1" || !a.WorkerAlive || a.Image != "debian-12" {
		t.Errorf("running job: %+v", a)
	}
	if b.JobID != "b" || b.State != StateQueued || b.Attempt != 0 || b.SubmittedAt.IsZero() {
		t.Errorf("queued job: %+v", b)
	}
	ws, err := q.Workers(ctx)
	if err != nil || len(ws) != 1 || ws[0].Slots != 2 || ws[0].Running[0] != "a" {
		t.Fatalf("workers %+v %v", ws, err)
	}
	if err := q.RemoveWorker(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if ws, _ := q.Workers(ctx); len(ws) != 0 {
		t.Errorf("removed worker still listed: %+v", ws)
	}
}

func TestCancelQueuedJobReportsWhoAndRemovesIt(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	if _, err := q.Submit(ctx, sampleJob("c1")); err != nil {
		t.Fatal(err)
	}
	var told []string
	stop, err := q.WatchCancels(func(id, reason string) { told = append(told, id+": "+reason) })
	if err != nil {
		t.Fatal(err)
	}
	out, err := q.Cancel(ctx, "c1", "alice@ci", "wrong image")
	if err != nil || !out.Cancelled || out.Removed != 1 {
		t.Fatalf("%+v %v", out, err)
	}
	if out.Result.Verdict != jobs.VerdictError || out.Result.Reason != "cancelled by alice@ci: wrong image" || out.Result.Retryable {
		t.Errorf("result %+v", out.Result)
	}
	if list, _ := q.Jobs(ctx); len(list) != 0 {
		t.Errorf("cancelled job still queued: %+v", list)
	}
	if st, ok, _ := q.Status(ctx, "debian-12"); !ok || st.JobID != "c1" || st.Verdict != jobs.VerdictError {
		t.Errorf("status %+v", st)
	}
	// A second cancel finds the result and changes nothing.
	out, err = q.Cancel(ctx, "c1", "bob", "")
	if err != nil || out.Cancelled || out.Result.Reason != "cancelled by alice@ci: wrong image" {
		t.Errorf("second cancel: %+v %v", out, err)
	}
	if _, err := q.Cancel(ctx, "nosuch", "bob", ""); err == nil {
		t.Error("cancel of an unknown job succeeded")
	}
	q.nc.Flush()
	time.Sleep(100 * time.Millisecond)
	stop()
	if len(told) != 1 || !strings.HasPrefix(told[0], "c1: cancelled by alice@ci") {
		t.Errorf("workers were told %q", told)
	}
}

func TestRerunReplacesTheResultAsANewAttempt(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	job := sampleJob("r1")
	first := sampleResult("r1", jobs.VerdictFail, time.Now())
	if ok, err := q.PublishResult(ctx, first, nil); err != nil || !ok {
		t.Fatal(ok, err)
	}
	acc, err := q.Rerun(ctx, job)
	if err != nil || acc.Duplicate {
		t.Fatal(acc, err)
	}
	again, err := q.Rerun(ctx, job)
	if err != nil || !again.Duplicate {
		t.Fatalf("the same rerun twice should be a no-op: %+v %v", again, err)
	}
	list, _ := q.Jobs(ctx)
	if len(list) != 1 || !list[0].Rerun {
		t.Fatalf("queue %+v", list)
	}
	_, seq, _, _ := q.ResultSeq(ctx, "r1")
	second := sampleResult("r1", jobs.VerdictPass, time.Now().Add(time.Second))
	second.Attempt = 2
	if ok, err := q.PublishResult(ctx, second, nil, Replacing(seq)); err != nil || !ok {
		t.Fatal(ok, err)
	}
	// A duplicate delivery of the same rerun loses.
	third := sampleResult("r1", jobs.VerdictFail, time.Now().Add(2*time.Second))
	if ok, err := q.PublishResult(ctx, third, nil, Replacing(seq)); err != nil || ok {
		t.Fatal(ok, err)
	}
	r, _, _ := q.Result(ctx, "r1")
	st, _, _ := q.Status(ctx, "debian-12")
	if r.Verdict != jobs.VerdictPass || r.Attempt != 2 || st.Verdict != jobs.VerdictPass || st.Attempt != 2 {
		t.Errorf("result %+v status %+v", r, st)
	}
}

func TestALosingDuplicateChangesNothingAPublisherReads(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	win := sampleResult("dup", jobs.VerdictPass, time.Now())
	win.Worker = "w1"
	if ok, err := q.PublishResult(ctx, win, strings.NewReader("winner console\n")); err != nil || !ok {
		t.Fatal(ok, err)
	}
	lose := sampleResult("dup", jobs.VerdictFail, time.Now().Add(time.Minute))
	lose.Worker, lose.Attempt = "w2", 2
	if ok, err := q.PublishResult(ctx, lose, strings.NewReader("loser console\n")); err != nil || ok {
		t.Fatal(ok, err)
	}
	var buf bytes.Buffer
	if err := q.Console(ctx, "dup", &buf); err != nil || buf.String() != "winner console\n" {
		t.Errorf("console %q %v", buf.String(), err)
	}
	st, _, _ := q.Status(ctx, "debian-12")
	r, _, _ := q.Result(ctx, "dup")
	if st.Verdict != jobs.VerdictPass || st.Worker != "w1" || r.Worker != "w1" || r.ConsoleLog != ConsoleRef(ConsoleObject("dup", 1, "w1")) {
		t.Errorf("status %+v result %+v", st, r)
	}
}

// A server set up by an imagevet that kept no settings (streams and a consumer with
// MaxDeliver 5, no settings bucket): the first worker brings it up to date.
func TestFirstWorkerUpgradesAnOlderQueue(t *testing.T) {
	srv := testServer(t)
	nc, err := Connect(ConnectOptions{URLs: []string{srv.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	js, _ := jetstream.New(nc)
	cfg := Config{}.withDefaults()
	if _, err := js.CreateStream(ctx, jobsStreamConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	old := consumerConfig(cfg)
	old.MaxDeliver = 5
	if _, err := js.CreateConsumer(ctx, StreamJobs, old); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, nc); err == nil {
		t.Fatal("an older queue opened as set up")
	}
	q, created, err := Ensure(ctx, nc, Config{}, "w1")
	if err != nil || !created {
		t.Fatalf("ensure: %v %v", created, err)
	}
	c, _ := q.Consumer(ctx)
	info, err := c.Info(ctx)
	if err != nil || info.Config.MaxDeliver != -1 {
		t.Fatalf("consumer after upgrade: %+v %v", info, err)
	}
}
