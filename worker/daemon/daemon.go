package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
)

// Runner vets one job: the whole lifecycle of booting one image.
type Runner interface {
	// Run vets one job and always returns a result (never panics out); the result's
	// Verdict/Retryable decide the ack. When ctx is cancelled Run destroys any VM it
	// started and returns promptly, with an error verdict unless it already had a
	// verdict. progress may be called from any goroutine until Run returns.
	Run(ctx context.Context, job jobs.Job, attempt int, progress func(jobs.Progress)) jobs.Result
}

// Option changes how a Daemon is built.
type Option func(*Daemon)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(d *Daemon) { d.log = l } }

// WithMemInfo sets where available memory is read from (default /proc/meminfo).
func WithMemInfo(m MemInfo) Option { return func(d *Daemon) { d.mem = m } }

// Daemon is one worker: it pulls jobs, admits, runs and reports them.
type Daemon struct {
	cfg    Config
	runner Runner
	log    *slog.Logger
	mem    MemInfo
	m      *metrics

	ready    chan struct{}
	httpAddr net.Addr // set before ready is closed

	mu      sync.Mutex
	granted int64         // MiB granted to admitted jobs
	active  int           // admitted jobs
	freed   chan struct{} // closed and replaced whenever memory is released
}

// errShutdown is the cancel cause of jobs still running when the grace period ends.
var errShutdown = errors.New("worker shutting down")

// New builds a daemon from cfg (defaults applied, then validated).
func New(cfg Config, runner Runner, opts ...Option) (*Daemon, error) {
	if runner == nil {
		return nil, errors.New("daemon: nil runner")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker config: %w", err)
	}
	d := &Daemon{cfg: cfg, runner: runner, log: slog.Default(), mem: ProcMeminfo{}, m: newMetrics(),
		ready: make(chan struct{}), freed: make(chan struct{})}
	for _, o := range opts {
		o(d)
	}
	d.log = d.log.With("worker", cfg.WorkerID)
	return d, nil
}

// Config returns the daemon's effective configuration.
func (d *Daemon) Config() Config { return d.cfg }

// Ready is closed once the daemon has set up its streams and starts pulling.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// HTTPAddr is where /metrics and /healthz are served (nil when disabled); valid
// after Ready.
func (d *Daemon) HTTPAddr() net.Addr { return d.httpAddr }

// Run connects to NATS (or starts the embedded server when no URL is configured) and
// serves until ctx ends, then shuts down gracefully.
func (d *Daemon) Run(ctx context.Context) error {
	opts := d.cfg.NATS
	opts.Logger = d.log
	if len(opts.URLs) == 0 {
		srv, err := StartEmbedded(d.cfg.EmbeddedStoreDir, d.cfg.EmbeddedHost, d.cfg.EmbeddedPort, d.log)
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		opts.URLs = []string{srv.ClientURL()}
		d.log.Info("embedded nats started", "url", srv.ClientURL(), "store", d.cfg.EmbeddedStoreDir)
	}
	nc, err := jobs.Connect(opts)
	if err != nil {
		return err
	}
	defer nc.Close()
	return d.Serve(ctx, nc)
}

// Serve pulls and runs jobs over nc until ctx ends. Then it stops pulling, lets
// running jobs finish within the grace period, cancels the rest and hands them back
// to the queue. It returns once no job is left; nc stays open.
func (d *Daemon) Serve(ctx context.Context, nc *nats.Conn) error {
	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	q, err := jobs.SetupQueue(setupCtx, nc, d.cfg.queueConfig())
	var cons jetstream.Consumer
	if err == nil {
		cons, err = q.SetupConsumer(setupCtx, d.cfg.queueConfig())
	}
	cancel()
	if err != nil {
		return err
	}
	if d.cfg.MetricsAddr != "" {
		addr, stop, err := serveHTTP(ctx, d.cfg.MetricsAddr, d.m, nc, d.log)
		if err != nil {
			return err
		}
		defer stop()
		d.httpAddr = addr
	}
	d.log.Info("worker started", "concurrency", d.cfg.Concurrency, "ack_wait", d.cfg.AckWait,
		"max_deliver", d.cfg.MaxDeliver, "http", d.httpAddr)
	close(d.ready)

	// Jobs run on a context that survives ctx so they can finish within the grace
	// period; it is cancelled with errShutdown when the grace period ends.
	jobsCtx, cancelJobs := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelJobs(nil)
	var wg sync.WaitGroup
	slots := make(chan struct{}, d.cfg.Concurrency)
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		// One pull per free slot. No fetch context: a pull that ends by its own
		// expiry never strands a message in flight.
		msg, err := cons.Next(jetstream.FetchMaxWait(d.cfg.FetchWait))
		if err != nil {
			<-slots
			if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
				d.log.Warn("pull failed", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			d.handle(ctx, jobsCtx, q, msg)
		}()
	}

	d.log.Info("worker stopping", "grace", d.cfg.GracePeriod)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	grace := time.NewTimer(d.cfg.GracePeriod)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		d.log.Warn("grace period over, cancelling running jobs")
		cancelJobs(errShutdown)
		<-done
	}
	d.log.Info("worker stopped")
	return nil
}

// handle settles one delivered job. stop is the daemon's context (shutdown started
// when it ends); jobsCtx is what runners run on.
func (d *Daemon) handle(stop, jobsCtx context.Context, q *jobs.Queue, msg jetstream.Msg) {
	d.m.jobsRunning.Inc()
	defer d.m.jobsRunning.Dec()
	meta, err := msg.Metadata()
	if err != nil {
		d.log.Error("job message without metadata", "err", err)
		d.settle(msg, "term", 0, d.log)
		return
	}
	attempt := int(meta.NumDelivered)
	d.m.queueLag.Observe(time.Since(meta.Timestamp).Seconds())
	log := d.log.With("seq", meta.Sequence.Stream, "attempt", attempt)
	hb := d.heartbeat(msg, log)
	defer hb()

	job, err := jobs.DecodeJob(msg.Data())
	if err != nil {
		d.reject(stop, q, msg, meta, err, log)
		return
	}
	job = job.WithDefaults()
	log = log.With("job", job.ID, "image", job.Publish.Name)

	// Dedupe on run: a job already reported (a resubmission after the dedupe
	// window, or a worker that died between report and ack) is not run again.
	opCtx, cancel := opContext(stop)
	prev, found, err := q.Result(opCtx, job.ID)
	cancel()
	switch {
	case err != nil:
		log.Warn("cannot read results, handing the job back", "err", err)
		hb()
		d.settle(msg, "nak", d.cfg.AdmissionRetry, log)
		return
	case found:
		opCtx, cancel := opContext(stop)
		if err := q.EnsureStatus(opCtx, prev); err != nil {
			log.Warn("status update failed", "err", err)
		}
		cancel()
		log.Info("job already reported, not running it again", "verdict", prev.Verdict)
		hb()
		d.settle(msg, "duplicate", 0, log)
		return
	case stop.Err() != nil:
		hb()
		d.settle(msg, "shutdown", 0, log)
		return
	}

	note := func(stage, event, msg string) {
		p := jobs.Progress{JobID: job.ID, Attempt: attempt, Worker: d.cfg.WorkerID, Stage: stage, Event: event, Message: msg}
		if err := q.PublishProgress(p); err != nil {
			log.Debug("progress not sent", "err", err)
		}
	}
	note("queue", "done", fmt.Sprintf("picked up by worker %s (attempt %d, queued %s)", d.cfg.WorkerID, attempt,
		time.Since(meta.Timestamp).Round(time.Millisecond)))
	need := int64(job.Machine.MemoryMiB + d.cfg.MemoryOverheadMiB)
	release, ok := d.admit(stop, need, func(free int64) {
		note("admission", "info", fmt.Sprintf("waiting for %d MiB of memory (%d MiB free)", need, free))
	}, log)
	if !ok {
		hb()
		switch {
		case stop.Err() != nil:
			d.settle(msg, "shutdown", 0, log)
		case attempt >= d.cfg.MaxDeliver:
			res := d.errorResult(job.ID, attempt, fmt.Sprintf("no worker could give %d MiB of memory in %d deliveries", need, attempt), true)
			res.Publish = job.Publish
			d.reportThen(stop, q, msg, res, "ack", log)
		default:
			d.m.admissionNaks.Inc()
			note("admission", "info", fmt.Sprintf("this host cannot give %d MiB now; back to the queue for %s", need, d.cfg.AdmissionRetry))
			d.settle(msg, "admission", d.cfg.AdmissionRetry, log)
		}
		return
	}
	started := time.Now().UTC()
	jobCtx, cancelJob := context.WithCancelCause(jobsCtx)
	res := d.run(jobCtx, q, job, attempt, log)
	cancelJob(nil)
	release()
	if context.Cause(jobsCtx) == errShutdown && res.Verdict != jobs.VerdictPass && res.Verdict != jobs.VerdictFail {
		// Cancelled by shutdown: not a verdict. Another worker takes it.
		log.Info("job cancelled by shutdown, handing it back")
		hb()
		d.settle(msg, "shutdown", 0, log)
		return
	}
	res = d.complete(res, job, attempt, started)
	for _, s := range res.Stages {
		d.m.stages.WithLabelValues(s.Name).Observe(s.Duration.D().Seconds())
	}
	switch {
	case res.Verdict == jobs.VerdictPass || res.Verdict == jobs.VerdictFail:
		d.reportThen(stop, q, msg, res, "ack", log)
	case res.Retryable && attempt < d.cfg.MaxDeliver:
		delay := d.cfg.retryDelay(attempt)
		log.Warn("retryable error, job goes back to the queue", "reason", res.Reason, "delay", delay)
		note("retry", "info", fmt.Sprintf("attempt %d of %d: %s; retrying in %s", attempt, d.cfg.MaxDeliver, res.Reason, delay))
		hb()
		d.settle(msg, "nak", delay, log)
	case res.Retryable:
		res.Reason = fmt.Sprintf("gave up after %d attempts: %s", attempt, res.Reason)
		d.reportThen(stop, q, msg, res, "ack", log)
	default:
		d.reportThen(stop, q, msg, res, "term", log)
	}
}

// run calls the runner, turning a panic into an error result.
func (d *Daemon) run(ctx context.Context, q *jobs.Queue, job jobs.Job, attempt int, log *slog.Logger) (res jobs.Result) {
	d.m.vmsRunning.Inc()
	defer d.m.vmsRunning.Dec()
	defer func() {
		if p := recover(); p != nil {
			log.Error("runner panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			res = d.errorResult(job.ID, attempt, fmt.Sprintf("internal error: runner panicked: %v", p), false)
		}
	}()
	log.Info("job started", "memory_mib", job.Machine.MemoryMiB)
	progress := func(p jobs.Progress) {
		p.JobID, p.Attempt, p.Worker = job.ID, attempt, d.cfg.WorkerID
		if err := q.PublishProgress(p); err != nil {
			log.Debug("progress not sent", "err", err)
		}
	}
	return d.runner.Run(ctx, job, attempt, progress)
}

// complete fills what the daemon knows into the runner's result.
func (d *Daemon) complete(res jobs.Result, job jobs.Job, attempt int, started time.Time) jobs.Result {
	res.Version = jobs.Version
	res.JobID = job.ID
	res.Attempt = attempt
	if res.Worker == "" {
		res.Worker = d.cfg.WorkerID
	}
	if res.Publish.Name == "" {
		res.Publish = job.Publish
	}
	if res.StartedAt.IsZero() {
		res.StartedAt = started
	}
	if res.FinishedAt.IsZero() {
		res.FinishedAt = time.Now().UTC()
	}
	switch res.Verdict {
	case jobs.VerdictPass, jobs.VerdictFail, jobs.VerdictError:
	default:
		res.Reason = fmt.Sprintf("internal error: runner returned verdict %q: %s", res.Verdict, res.Reason)
		res.Verdict, res.Retryable = jobs.VerdictError, false
	}
	if res.Checks == nil {
		res.Checks = []jobs.CheckResult{}
	}
	if res.Stages == nil {
		res.Stages = []jobs.Stage{}
	}
	return res
}

// reject reports an invalid job with an error result naming the problem, then
// terminates it.
func (d *Daemon) reject(stop context.Context, q *jobs.Queue, msg jetstream.Msg, meta *jetstream.MsgMetadata, cause error, log *slog.Logger) {
	id, name := rawJobID(msg.Data())
	if id == "" {
		id = fmt.Sprintf("invalid-seq-%d", meta.Sequence.Stream)
	}
	if name == "" {
		name = id
	}
	log = log.With("job", id, "image", name)
	log.Warn("invalid job", "err", cause)
	res := d.errorResult(id, int(meta.NumDelivered), cause.Error(), false)
	// The image's status shows the error too, so nothing publishes it on an old verdict.
	res.Publish.Name = name
	d.reportThen(stop, q, msg, res, "term", log)
}

// rawJobID digs a usable job id and image name out of a document that did not
// decode; either is "" when it cannot be had.
func rawJobID(data []byte) (id, name string) {
	var doc struct {
		ID      json.RawMessage `json:"id"`
		Publish struct {
			Name json.RawMessage `json:"name"`
		} `json:"publish"`
	}
	if json.Unmarshal(data, &doc) != nil {
		return "", ""
	}
	if json.Unmarshal(doc.ID, &id) != nil || !jobs.ValidJobID(id) {
		id = ""
	}
	if json.Unmarshal(doc.Publish.Name, &name) != nil || len(name) > 255 {
		name = ""
	}
	return id, name
}

func (d *Daemon) errorResult(id string, attempt int, reason string, retryable bool) jobs.Result {
	now := time.Now().UTC()
	return jobs.Result{
		Version: jobs.Version, JobID: id, Verdict: jobs.VerdictError, Retryable: retryable,
		Reason: reason, Checks: []jobs.CheckResult{}, Stages: []jobs.Stage{},
		Worker: d.cfg.WorkerID, Attempt: attempt, StartedAt: now, FinishedAt: now,
	}
}

// reportThen publishes the result (console log, results stream, status) and only
// then settles the message with outcome "ack" or "term". When the result cannot be
// published the job goes back to the queue so the verdict is never lost.
func (d *Daemon) reportThen(stop context.Context, q *jobs.Queue, msg jetstream.Msg, res jobs.Result, outcome string, log *slog.Logger) {
	var err error
	var published bool
	for try := range 3 {
		if try > 0 {
			time.Sleep(time.Duration(try) * 2 * time.Second)
		}
		published, err = d.publish(stop, q, res, log)
		if err == nil {
			break
		}
		log.Warn("publishing the result failed", "try", try+1, "err", err)
	}
	if err != nil {
		log.Error("result not published, handing the job back", "err", err)
		d.settle(msg, "nak", d.cfg.AdmissionRetry, log)
		return
	}
	if published {
		d.m.jobs.WithLabelValues(string(res.Verdict)).Inc()
	}
	log.Info("job reported", "verdict", res.Verdict, "failed_check", res.FailedCheck,
		"reason", res.Reason, "published", published)
	d.settle(msg, outcome, 0, log)
}

func (d *Daemon) publish(stop context.Context, q *jobs.Queue, res jobs.Result, log *slog.Logger) (bool, error) {
	ctx, cancel := opContext(stop)
	defer cancel()
	var console io.Reader
	// A runner keeps the whole console log in a local file; it goes to the object
	// store so it outlives the worker.
	if res.ConsoleLog != "" && filepath.IsAbs(res.ConsoleLog) {
		f, err := os.Open(res.ConsoleLog)
		if err != nil {
			log.Warn("console log not readable", "path", res.ConsoleLog, "err", err)
		} else {
			defer f.Close()
			console = f
		}
	}
	return q.PublishResult(ctx, res, console)
}

// settle acks, naks (after delay) or terminates a message and counts the outcome:
// "ack" and "duplicate" ack, "term" terminates, everything else naks.
func (d *Daemon) settle(msg jetstream.Msg, outcome string, delay time.Duration, log *slog.Logger) {
	var err error
	switch outcome {
	case "ack", "duplicate":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = msg.DoubleAck(ctx)
		cancel()
	case "term":
		err = msg.Term()
	default:
		err = msg.NakWithDelay(delay)
	}
	d.m.deliveries.WithLabelValues(outcome).Inc()
	if err != nil {
		// The server redelivers after AckWait; dedupe on run covers a lost ack.
		log.Warn("settling the job failed", "outcome", outcome, "err", err)
	}
}

// heartbeat sends InProgress every AckWait/3 until the returned stop is called
// (idempotent), so a long job is not redelivered.
func (d *Daemon) heartbeat(msg jetstream.Msg, log *slog.Logger) (stop func()) {
	t := time.NewTicker(d.cfg.AckWait / 3)
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					log.Warn("heartbeat failed", "err", err)
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			t.Stop()
			<-finished
		})
	}
}

// admit grants need MiB to a job when the host can give it: MemAvailable minus the
// reserve minus what running jobs were granted (counted in full even as their VMs
// already use part of it: admission errs on the safe side). A job that does not fit
// waits (waiting is told once) while this worker runs other jobs, up to
// AdmissionHold; ok is false when it should be handed back.
func (d *Daemon) admit(stop context.Context, need int64, waiting func(freeMiB int64), log *slog.Logger) (release func(), ok bool) {
	var waitStart time.Time
	for {
		d.mu.Lock()
		avail, err := d.mem.AvailableMiB()
		free := avail - int64(d.cfg.MemoryReserveMiB) - d.granted
		if err == nil && free >= need {
			d.granted += need
			d.active++
			d.m.memoryGranted.Set(float64(d.granted))
			d.mu.Unlock()
			if !waitStart.IsZero() {
				d.m.admissionWait.Observe(time.Since(waitStart).Seconds())
				log.Info("memory admitted after waiting", "need_mib", need, "waited", time.Since(waitStart).Round(time.Millisecond))
			}
			var once sync.Once
			return func() { once.Do(func() { d.release(need) }) }, true
		}
		active, freed := d.active, d.freed
		d.mu.Unlock()
		if err != nil {
			log.Error("cannot read available memory", "err", err)
		}
		if waitStart.IsZero() {
			waitStart = time.Now()
			d.m.admissionWaits.Inc()
			log.Info("waiting for memory", "need_mib", need, "free_mib", free, "jobs_running", active)
			if active > 0 {
				waiting(free)
			}
		}
		if active == 0 || time.Since(waitStart) >= d.cfg.AdmissionHold {
			log.Warn("host cannot give the job's memory, handing it back", "need_mib", need, "free_mib", free)
			return nil, false
		}
		select {
		case <-stop.Done():
			return nil, false
		case <-freed:
		case <-time.After(2 * time.Second):
		}
	}
}

func (d *Daemon) release(mib int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.granted -= mib
	d.active--
	d.m.memoryGranted.Set(float64(d.granted))
	close(d.freed)
	d.freed = make(chan struct{})
}

// opContext bounds one NATS operation; it survives shutdown so reports still go out.
func opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
