package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/queue"
	"github.com/imagevet/imagevet/queue/queuetest"
)

// startServer runs an in-process JetStream server on a random loopback port.
func startServer(t testing.TB) string { return queuetest.Server(t) }

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func testJob(id string) jobs.Job {
	return jobs.Job{
		Version: jobs.Version, ID: id,
		Image: jobs.ImageSpec{Source: "file:///srv/images/" + id + ".qcow2", Format: jobs.FormatQCOW2,
			Checksum: "sha256:" + strings.Repeat("0", 64)},
		Guest:   jobs.GuestSpec{User: "debian"},
		Machine: jobs.MachineSpec{MemoryMiB: 256},
	}
}

// fakeRunner records calls and answers with fn (default: pass).
type fakeRunner struct {
	fn func(ctx context.Context, job jobs.Job, attempt int, progress func(jobs.Progress)) jobs.Result

	mu         sync.Mutex
	calls      map[string]int
	running    int
	maxRunning int
	started    chan string
}

func newFake(fn func(ctx context.Context, job jobs.Job, attempt int, progress func(jobs.Progress)) jobs.Result) *fakeRunner {
	return &fakeRunner{fn: fn, calls: map[string]int{}, started: make(chan string, 1000)}
}

func (f *fakeRunner) Run(ctx context.Context, job jobs.Job, attempt int, progress func(jobs.Progress)) jobs.Result {
	f.mu.Lock()
	f.calls[job.ID]++
	f.running++
	f.maxRunning = max(f.maxRunning, f.running)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}()
	select {
	case f.started <- job.ID:
	default:
	}
	progress(jobs.Progress{Stage: "boot", Event: "start"})
	if f.fn == nil {
		return passResult()
	}
	return f.fn(ctx, job, attempt, progress)
}

func (f *fakeRunner) callsOf(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

func (f *fakeRunner) total() (calls, maxRunning int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.calls {
		calls += n
	}
	return calls, f.maxRunning
}

func passResult() jobs.Result {
	return jobs.Result{Verdict: jobs.VerdictPass,
		Checks: []jobs.CheckResult{{Name: jobs.CheckBoot, Status: jobs.StatusPass, Required: true}},
		Stages: []jobs.Stage{{Name: "boot", Start: time.Now(), Duration: jobs.Duration(time.Second)}}}
}

func errorResult(reason string, retryable bool) jobs.Result {
	return jobs.Result{Verdict: jobs.VerdictError, Retryable: retryable, Reason: reason}
}

// fastConfig is a config for tests: short waits everywhere.
func fastConfig(url, id string) Config {
	return Config{
		NATS:              queue.ConnectOptions{URLs: []string{url}},
		WorkerID:          id,
		Concurrency:       2,
		MemoryReserveMiB:  1,
		MemoryOverheadMiB: 1,
		AckWait:           3 * time.Second,
		MaxDeliver:        3,
		RetryDelays:       []time.Duration{50 * time.Millisecond, 100 * time.Millisecond},
		AdmissionRetry:    50 * time.Millisecond,
		AdmissionHold:     5 * time.Second,
		FetchWait:         200 * time.Millisecond,
		GracePeriod:       5 * time.Second,
	}
}

type running struct {
	d      *Daemon
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startDaemon serves on its own connection until stopped (or the test ends).
func startDaemon(t testing.TB, cfg Config, r Runner, opts ...Option) *running {
	t.Helper()
	nc := connect(t, cfg.NATS.URLs[0])
	return startDaemonOn(t, nc, cfg, r, opts...)
}

func startDaemonOn(t testing.TB, nc *nats.Conn, cfg Config, r Runner, opts ...Option) *running {
	t.Helper()
	if !testing.Verbose() {
		opts = append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	}
	opts = append([]Option{WithMemInfo(FixedMemInfo(1 << 20))}, opts...)
	d, err := New(cfg, r, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rd := &running{d: d, cancel: cancel, done: make(chan error, 1)}
	go func() { rd.done <- d.Serve(ctx, nc) }()
	t.Cleanup(func() { rd.stop(t) })
	select {
	case <-d.Ready():
	case err := <-rd.done:
		t.Fatalf("daemon ended at start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("daemon not ready")
	}
	return rd
}

func (r *running) stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("daemon did not stop")
		}
	})
}

func openQueue(t testing.TB, url string) (*queue.Queue, *nats.Conn) {
	t.Helper()
	nc := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The queue as a first worker with fastConfig's settings would set it up.
	q, _, err := queue.Ensure(ctx, nc, fastConfig(url, "test").queueConfig(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return q, nc
}

func submit(t testing.TB, q *queue.Queue, j jobs.Job) queue.Acceptance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acc, err := q.Submit(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

func wait(t testing.TB, q *queue.Queue, id string) jobs.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := q.Wait(ctx, id, nil)
	if err != nil {
		t.Fatalf("wait for %s: %v", id, err)
	}
	return r
}

// streamState returns the jobs stream's message count and the number of stored
// results.
func streamState(t testing.TB, nc *nats.Conn) (queued, results uint64) {
	t.Helper()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for name, p := range map[string]*uint64{queue.StreamJobs: &queued, queue.StreamResults: &results} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		*p = info.State.Msgs
	}
	return queued, results
}

// eventually polls cond until it holds or the time is up.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPassAndFailAreReportedThenAcked(t *testing.T) {
	url := startServer(t)
	consoleFile := filepath.Join(t.TempDir(), "console.log")
	fullLog := strings.Repeat("boot line\n", 5000) + "login: "
	if err := os.WriteFile(consoleFile, []byte(fullLog), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newFake(func(_ context.Context, job jobs.Job, _ int, _ func(jobs.Progress)) jobs.Result {
		if job.ID == "bad-image" {
			return jobs.Result{Verdict: jobs.VerdictFail, FailedCheck: jobs.CheckSSH, Reason: "no SSH",
				ConsoleTail: strings.Repeat("x", queue.MaxConsoleTail*2), ConsoleLog: consoleFile}
		}
		return passResult()
	})
	startDaemon(t, fastConfig(url, "w1"), r)
	q, nc := openQueue(t, url)
	good := testJob("good-image")
	good.Publish = jobs.Publication{Name: "Debian 12 (bookworm)", Properties: map[string]string{"os_distro": "debian"}}
	submit(t, q, good)
	submit(t, q, testJob("bad-image"))

	res := wait(t, q, "good-image")
	if res.Verdict != jobs.VerdictPass || res.Worker != "w1" || res.Attempt != 1 || res.JobID != "good-image" {
		t.Fatalf("good: %+v", res)
	}
	if res.Publish.Properties["os_distro"] != "debian" {
		t.Errorf("publication not carried into the result: %+v", res.Publish)
	}
	bad := wait(t, q, "bad-image")
	if bad.Verdict != jobs.VerdictFail || bad.FailedCheck != jobs.CheckSSH {
		t.Fatalf("bad: %+v", bad)
	}
	if len(bad.ConsoleTail) > queue.MaxConsoleTail {
		t.Errorf("console tail %d bytes, cap %d", len(bad.ConsoleTail), queue.MaxConsoleTail)
	}
	if bad.ConsoleLog != queue.ConsoleRef(queue.ConsoleObject("bad-image", 1, "w1")) {
		t.Errorf("console log ref %q", bad.ConsoleLog)
	}
	var sb strings.Builder
	ctx := context.Background()
	if err := q.Console(ctx, "bad-image", &sb); err != nil || sb.String() != fullLog {
		t.Errorf("console object: err=%v, %d bytes (want %d)", err, sb.Len(), len(fullLog))
	}
	st, ok, err := q.Status(ctx, "Debian 12 (bookworm)")
	if err != nil || !ok || st.JobID != "good-image" || st.Verdict != jobs.VerdictPass {
		t.Errorf("status: ok=%v err=%v %+v", ok, err, st)
	}
	eventually(t, 5*time.Second, "jobs stream to drain", func() bool {
		queued, results := streamState(t, nc)
		return queued == 0 && results == 2
	})
}

func TestRetryableErrorNaksThenPasses(t *testing.T) {
	url := startServer(t)
	var times []time.Time
	var mu sync.Mutex
	r := newFake(func(_ context.Context, _ jobs.Job, attempt int, _ func(jobs.Progress)) jobs.Result {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if attempt < 3 {
			return errorResult("libvirtd not reachable", true)
		}
		return passResult()
	})
	cfg := fastConfig(url, "w1")
	cfg.MaxDeliver = 4
	cfg.RetryDelays = []time.Duration{300 * time.Millisecond, 900 * time.Millisecond}
	startDaemon(t, cfg, r)
	q, nc := openQueue(t, url)
	submit(t, q, testJob("flaky"))
	res := wait(t, q, "flaky")
	if res.Verdict != jobs.VerdictPass || res.Attempt != 3 || r.callsOf("flaky") != 3 {
		t.Fatalf("verdict %s attempt %d calls %d", res.Verdict, res.Attempt, r.callsOf("flaky"))
	}
	mu.Lock()
	defer mu.Unlock()
	if gap := times[1].Sub(times[0]); gap < 300*time.Millisecond {
		t.Errorf("first retry after %s, want >= 300ms", gap)
	}
	if gap := times[2].Sub(times[1]); gap < 900*time.Millisecond {
		t.Errorf("second retry after %s, want >= 900ms (growing delay)", gap)
	}
	eventually(t, 5*time.Second, "jobs stream to drain", func() bool { q, _ := streamState(t, nc); return q == 0 })
}

func TestMaxDeliverExhaustionReportsOneFinalError(t *testing.T) {
	url := startServer(t)
	r := newFake(func(context.Context, jobs.Job, int, func(jobs.Progress)) jobs.Result {
		return errorResult("disk full", true)
	})
	startDaemon(t, fastConfig(url, "w1"), r) // MaxDeliver 3
	q, nc := openQueue(t, url)
	submit(t, q, testJob("doomed"))
	res := wait(t, q, "doomed")
	if res.Verdict != jobs.VerdictError || !res.Retryable || res.Attempt != 3 {
		t.Fatalf("%+v", res)
	}
	if !strings.Contains(res.Reason, "gave up after 3 attempts: disk full") {
		t.Errorf("reason %q", res.Reason)
	}
	eventually(t, 5*time.Second, "jobs stream to drain", func() bool {
		queued, results := streamState(t, nc)
		return queued == 0 && results == 1
	})
	time.Sleep(500 * time.Millisecond) // no further delivery may happen
	if n := r.callsOf("doomed"); n != 3 {
		t.Errorf("runner called %d times, want 3", n)
	}
}

func TestInvalidJobsAreTerminatedWithAnErrorResult(t *testing.T) {
	url := startServer(t)
	r := newFake(nil)
	startDaemon(t, fastConfig(url, "w1"), r)
	q, nc := openQueue(t, url)
	ctx := context.Background()
	// A job whose id is readable but whose image is missing.
	if _, err := q.SubmitRaw(ctx, "no-image", []byte(`{"version":1,"id":"no-image","guest":{"user":"debian"},"publish":{"name":"Debian 13"}}`)); err != nil {
		t.Fatal(err)
	}
	res := wait(t, q, "no-image")
	if res.Verdict != jobs.VerdictError || res.Retryable || !strings.Contains(res.Reason, "image.source: required") {
		t.Fatalf("%+v", res)
	}
	// The image's status carries the error, so nothing publishes on an older verdict.
	if st, ok, err := q.Status(ctx, "Debian 13"); err != nil || !ok || st.JobID != "no-image" {
		t.Errorf("status of the invalid job's image: %+v %v %v", st, ok, err)
	}
	// Not even JSON: the result is named after the stream sequence.
	acc, err := q.SubmitRaw(ctx, "garbage", []byte(`{"id": 42, oops`))
	if err != nil {
		t.Fatal(err)
	}
	seqID := fmt.Sprintf("invalid-seq-%d", acc.Sequence)
	res = wait(t, q, seqID)
	if res.Verdict != jobs.VerdictError || !strings.Contains(res.Reason, "not valid JSON") {
		t.Fatalf("%+v", res)
	}
	if calls, _ := r.total(); calls != 0 {
		t.Errorf("runner called %d times for invalid jobs", calls)
	}
	eventually(t, 5*time.Second, "terminated jobs to leave the stream", func() bool { q, _ := streamState(t, nc); return q == 0 })
}

func TestRunnerBadJobIsTerminated(t *testing.T) {
	url := startServer(t)
	r := newFake(func(context.Context, jobs.Job, int, func(jobs.Progress)) jobs.Result {
		return errorResult("checksum mismatch in the job", false)
	})
	startDaemon(t, fastConfig(url, "w1"), r)
	q, nc := openQueue(t, url)
	submit(t, q, testJob("wrong-sum"))
	res := wait(t, q, "wrong-sum")
	if res.Verdict != jobs.VerdictError || res.Retryable || r.callsOf("wrong-sum") != 1 {
		t.Fatalf("%+v calls %d", res, r.callsOf("wrong-sum"))
	}
	eventually(t, 5*time.Second, "jobs stream to drain", func() bool { q, _ := streamState(t, nc); return q == 0 })
}

func TestDedupeOnSubmitAndOnRun(t *testing.T) {
	url := startServer(t)
	q, nc := openQueue(t, url)
	ctx := context.Background()

	// On submit: the second submission of an id is a no-op.
	first := submit(t, q, testJob("once"))
	second := submit(t, q, testJob("once"))
	if first.Duplicate || !second.Duplicate || second.Sequence != first.Sequence {
		t.Fatalf("first %+v second %+v", first, second)
	}
	// On run: a job whose result already exists is acked without running.
	done := passResult()
	done.JobID, done.Worker, done.Attempt = "already", "elsewhere", 1
	done.FinishedAt = time.Now()
	if ok, err := q.PublishResult(ctx, done, nil); err != nil || !ok {
		t.Fatalf("publish: %v %v", ok, err)
	}
	submit(t, q, testJob("already"))

	r := newFake(nil)
	startDaemon(t, fastConfig(url, "w1"), r)
	if res := wait(t, q, "once"); res.Verdict != jobs.VerdictPass {
		t.Fatalf("%+v", res)
	}
	eventually(t, 5*time.Second, "jobs stream to drain", func() bool { q, _ := streamState(t, nc); return q == 0 })
	if n := r.callsOf("once"); n != 1 {
		t.Errorf("'once' ran %d times", n)
	}
	if n := r.callsOf("already"); n != 0 {
		t.Errorf("'already' ran %d times", n)
	}
	res, _, _ := q.Result(ctx, "already")
	if res.Worker != "elsewhere" {
		t.Errorf("existing result replaced: %+v", res)
	}
	// A resubmission after the job ran is dropped by the server or by the worker.
	submit(t, q, testJob("once"))
	time.Sleep(500 * time.Millisecond)
	if n := r.callsOf("once"); n != 1 {
		t.Errorf("'once' ran %d times after resubmission", n)
	}
}

func TestRedeliveryAfterWorkerDiesMidJob(t *testing.T) {
	url := startServer(t)
	q, nc := openQueue(t, url)
	block := make(chan struct{})
	defer close(block)
	dying := newFake(func(ctx context.Context, _ jobs.Job, _ int, _ func(jobs.Progress)) jobs.Result {
		select { // hangs like a machine that lost power
		case <-block:
		case <-ctx.Done():
		}
		return errorResult("cancelled", true)
	})
	cfgA := fastConfig(url, "dying")
	cfgA.GracePeriod = 10 * time.Millisecond
	ncA := connect(t, url)
	a := startDaemonOn(t, ncA, cfgA, dying)
	submit(t, q, testJob("survivor"))
	select {
	case <-dying.started:
	case <-time.After(10 * time.Second):
		t.Fatal("first worker never started the job")
	}
	ncA.Close() // the worker dies: no ack, no nak, no heartbeat

	healthy := newFake(nil)
	startDaemon(t, fastConfig(url, "healthy"), healthy)
	res := wait(t, q, "survivor")
	if res.Verdict != jobs.VerdictPass || res.Worker != "healthy" || res.Attempt != 2 {
		t.Fatalf("%+v", res)
	}
	a.stop(t)
	time.Sleep(300 * time.Millisecond)
	if n := healthy.callsOf("survivor"); n != 1 {
		t.Errorf("second worker ran the job %d times", n)
	}
	queued, results := streamState(t, nc)
	if queued != 0 || results != 1 {
		t.Errorf("queued %d results %d, want 0 and 1", queued, results)
	}
}

func TestShutdownLetsRunningJobsFinish(t *testing.T) {
	url := startServer(t)
	r := newFake(func(ctx context.Context, _ jobs.Job, _ int, _ func(jobs.Progress)) jobs.Result {
		select {
		case <-time.After(700 * time.Millisecond):
			return passResult()
		case <-ctx.Done():
			return errorResult("cancelled", true)
		}
	})
	d := startDaemon(t, fastConfig(url, "w1"), r)
	q, nc := openQueue(t, url)
	submit(t, q, testJob("finishing"))
	<-r.started
	start := time.Now()
	d.stop(t)
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("shutdown took %s: did not wait for the running job", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, ok, err := q.Result(ctx, "finishing")
	if err != nil || !ok || res.Verdict != jobs.VerdictPass {
		t.Fatalf("result after graceful shutdown: ok=%v err=%v %+v", ok, err, res)
	}
	if queued, _ := streamState(t, nc); queued != 0 {
		t.Errorf("%d jobs left queued", queued)
	}
}

func TestShutdownAfterGraceCancelsAndHandsBack(t *testing.T) {
	url := startServer(t)
	var cancelled atomic.Bool
	stuck := newFake(func(ctx context.Context, _ jobs.Job, _ int, _ func(jobs.Progress)) jobs.Result {
		<-ctx.Done()
		cancelled.Store(true)
		return errorResult("cancelled: "+context.Cause(ctx).Error(), false) // not even retryable
	})
	cfg := fastConfig(url, "w1")
	cfg.GracePeriod = 200 * time.Millisecond
	d := startDaemon(t, cfg, stuck)
	q, _ := openQueue(t, url)
	submit(t, q, testJob("handed-back"))
	<-stuck.started
	d.stop(t)
	if !cancelled.Load() {
		t.Fatal("runner was not cancelled after the grace period")
	}
	ctx := context.Background()
	if _, ok, _ := q.Result(ctx, "handed-back"); ok {
		t.Fatal("a job cancelled by shutdown must not get a result")
	}
	// Handed back at once (nak without delay): the next worker takes it well
	// before AckWait.
	next := newFake(nil)
	start := time.Now()
	startDaemon(t, fastConfig(url, "w2"), next)
	res := wait(t, q, "handed-back")
	if res.Verdict != jobs.VerdictPass || res.Worker != "w2" {
		t.Fatalf("%+v", res)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %s to be picked up again: was it nak'ed?", took)
	}
}

// memFake reports a settable amount of available memory.
type memFake struct{ mib atomic.Int64 }

func (m *memFake) AvailableMiB() (int64, error) { return m.mib.Load(), nil }

func TestMemoryAdmission(t *testing.T) {
	url := startServer(t)
	mem := &memFake{}
	mem.mib.Store(4096)
	r := newFake(func(context.Context, jobs.Job, int, func(jobs.Progress)) jobs.Result {
		time.Sleep(300 * time.Millisecond)
		return passResult()
	})
	cfg := fastConfig(url, "w1")
	cfg.MemoryReserveMiB, cfg.MemoryOverheadMiB = 512, 256
	cfg.MaxDeliver = 2
	d := startDaemon(t, cfg, r, WithMemInfo(mem))
	q, _ := openQueue(t, url)
	// Submitters see why their job waits.
	var mu sync.Mutex
	events := map[string]int{}
	for _, id := range []string{"big-1", "big-2"} {
		stop, err := q.FollowProgress(id, func(p jobs.Progress) {
			mu.Lock()
			events[p.Stage+"/"+p.Event]++
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	// 2 × (2048+256) does not fit in 4096-512: they must run one after the other.
	for _, id := range []string{"big-1", "big-2"} {
		j := testJob(id)
		j.Machine.MemoryMiB = 2048
		submit(t, q, j)
	}
	// Larger than the host can ever give: handed back, then a final error.
	huge := testJob("huge")
	huge.Machine.MemoryMiB = 8192
	submit(t, q, huge)
	for _, id := range []string{"big-1", "big-2"} {
		if res := wait(t, q, id); res.Verdict != jobs.VerdictPass {
			t.Fatalf("%s: %+v", id, res)
		}
	}
	if _, maxRunning := r.total(); maxRunning != 1 {
		t.Errorf("%d jobs ran at once; memory allows one", maxRunning)
	}
	eventually(t, 5*time.Second, "progress events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return events["queue/done"] == 2 && events["admission/info"] == 1 && events["boot/start"] == 2
	})
	res := wait(t, q, "huge")
	if res.Verdict != jobs.VerdictError || !strings.Contains(res.Reason, "no worker could give 8448 MiB") {
		t.Fatalf("%+v", res)
	}
	if n := r.callsOf("huge"); n != 0 {
		t.Errorf("huge job ran %d times", n)
	}
	if got := counterValue(t, d.d, "imagevet_admission_waits_total"); got < 1 {
		t.Errorf("admission waits %v", got)
	}
}

func TestTwentyJobsConcurrencyTwoExactlyOneResultEach(t *testing.T) {
	url := startServer(t)
	r := newFake(func(context.Context, jobs.Job, int, func(jobs.Progress)) jobs.Result {
		time.Sleep(20 * time.Millisecond)
		return passResult()
	})
	cfg := fastConfig(url, "w1")
	cfg.MetricsAddr = "127.0.0.1:0"
	d := startDaemon(t, cfg, r)
	q, nc := openQueue(t, url)
	for i := range 20 {
		submit(t, q, testJob(fmt.Sprintf("job-%02d", i)))
	}
	for i := range 20 {
		id := fmt.Sprintf("job-%02d", i)
		if res := wait(t, q, id); res.Verdict != jobs.VerdictPass || res.JobID != id {
			t.Fatalf("%s: %+v", id, res)
		}
	}
	calls, maxRunning := r.total()
	if calls != 20 || maxRunning > 2 {
		t.Errorf("calls %d (want 20), max running %d (want <= 2)", calls, maxRunning)
	}
	eventually(t, 5*time.Second, "20 results and an empty queue", func() bool {
		queued, results := streamState(t, nc)
		return queued == 0 && results == 20
	})
	eventually(t, 5*time.Second, "no job running", func() bool { return gaugeValue(t, d.d, "imagevet_jobs_running") == 0 })

	// The HTTP endpoints tell the same story.
	base := "http://" + d.d.HTTPAddr().String()
	body := httpGet(t, base+"/healthz", http.StatusOK)
	if strings.TrimSpace(body) != "ok" {
		t.Errorf("healthz %q", body)
	}
	metrics := httpGet(t, base+"/metrics", http.StatusOK)
	for _, want := range []string{`imagevet_jobs_total{verdict="pass"} 20`, `imagevet_stage_duration_seconds_count{stage="boot"} 20`,
		"imagevet_queue_lag_seconds_count 20", "imagevet_jobs_running 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestHealthzFailsWhenNATSIsGone(t *testing.T) {
	url := startServer(t)
	cfg := fastConfig(url, "w1")
	cfg.MetricsAddr = "127.0.0.1:0"
	nc := connect(t, url)
	d := startDaemonOn(t, nc, cfg, newFake(nil))
	base := "http://" + d.d.HTTPAddr().String()
	httpGet(t, base+"/healthz", http.StatusOK)
	nc.Close()
	httpGet(t, base+"/healthz", http.StatusServiceUnavailable)
}

func httpGet(t *testing.T, url string, want int) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, b, want)
	}
	return string(b)
}

func counterValue(t *testing.T, d *Daemon, name string) float64 {
	t.Helper()
	mfs, err := d.m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

func gaugeValue(t *testing.T, d *Daemon, name string) float64 {
	t.Helper()
	mfs, err := d.m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

func TestRunWithEmbeddedServer(t *testing.T) {
	cfg := fastConfig("", "solo")
	cfg.NATS.URLs = nil
	cfg.StateDir = t.TempDir()
	cfg.EmbeddedPort = -1
	opts := []Option{WithMemInfo(FixedMemInfo(1 << 20))}
	if !testing.Verbose() {
		opts = append(opts, WithLogger(slog.New(slog.DiscardHandler)))
	}
	d, err := New(cfg, newFake(nil), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "nats", "jetstream")); err != nil {
		t.Errorf("embedded store not under the state dir: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{}.WithDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	bad := good
	bad.Concurrency = -1
	bad.AckWait = time.Second
	bad.NATS.URLs = []string{"nats://127.0.0.1:4222"}
	bad.NATS.TLSCertFile = "/x.pem"
	err := bad.Validate()
	for _, want := range []string{"concurrency", "ack wait", "TLS client certificate"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
	if _, err := New(bad, newFake(nil)); err == nil {
		t.Error("New accepted an invalid config")
	}
}

func TestParseMemAvailable(t *testing.T) {
	got, err := parseMemAvailable([]byte("MemTotal:       24585972 kB\nMemFree:         1000 kB\nMemAvailable:   20971520 kB\n"))
	if err != nil || got != 20480 {
		t.Fatalf("got %d %v", got, err)
	}
	if _, err := parseMemAvailable([]byte("MemTotal: 1 kB\n")); !errors.Is(err, ErrNoMemAvailable) {
		t.Errorf("missing line: %v", err)
	}
	path := filepath.Join(t.TempDir(), "meminfo")
	os.WriteFile(path, []byte("MemAvailable: 2048 kB\n"), 0o600)
	if got, err := (ProcMeminfo{Path: path}).AvailableMiB(); err != nil || got != 2 {
		t.Errorf("file: %d %v", got, err)
	}
	if got, err := (ProcMeminfo{}).AvailableMiB(); err != nil || got <= 0 {
		t.Errorf("/proc/meminfo: %d %v", got, err)
	}
}
