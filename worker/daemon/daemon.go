package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/retry"

	"github.com/imagevet/imagevet/queue"
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

	// The queue's settings, adopted in Serve (queue.Settings win over Config).
	ackWait    time.Duration
	maxDeliver int

	mu      sync.Mutex
	granted int64                              // MiB granted to admitted jobs
	active  int                                // admitted jobs
	freed   chan struct{}                      // closed and replaced whenever memory is released
	running map[string]context.CancelCauseFunc // job id -> cancel of its attempt
}

// errShutdown is the cancel cause of jobs still running when the grace period ends.
var errShutdown = errors.New("worker shutting down")

// CancelledError is the cancel cause of a job stopped by `imagevet cancel`; the
// canceller has already reported the job.
type CancelledError struct{ Reason string }

func (e *CancelledError) Error() string { return e.Reason }

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
		ready: make(chan struct{}), freed: make(chan struct{}), running: map[string]context.CancelCauseFunc{}}
	for _, o := range opts {
		o(d)
	}
	d.log = d.log.With("worker", cfg.WorkerID)
	return d, nil
}

// Ready is closed once the daemon has set up its streams and starts pulling.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// HTTPAddr is where /metrics and /healthz are served (nil when disabled); valid
// after Ready.
func (d *Daemon) HTTPAddr() net.Addr { return d.httpAddr }

// Run connects to NATS (or starts the embedded server when no URL is configured) and
// serves until ctx ends, then shuts down gracefully. A server that is not listening
// yet is waited for (jobs.Dialer: backoff, a log line per attempt, /healthz says so);
// only a *jobs.ConnectError (bad URL, refused credentials, unreadable files) ends
// the wait with an error, and ctx ending during it is a clean stop.
func (d *Daemon) Run(ctx context.Context) error {
	opts := d.cfg.NATS
	opts.Logger = d.log
	if len(opts.URLs) == 0 {
		srv, err := queue.StartEmbedded(d.cfg.EmbeddedStoreDir, d.cfg.EmbeddedHost, d.cfg.EmbeddedPort, d.log)
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		opts.URLs = []string{srv.ClientURL()}
		d.log.Info("embedded nats started", "url", srv.ClientURL(), "store", d.cfg.EmbeddedStoreDir)
	}
	dialer := &queue.Dialer{Options: opts}
	// Healthy once connected and pulling: a worker whose queue is not set up yet
	// (it sets it up on an empty server) would refuse nothing but take no job.
	health := func() error {
		if err := dialer.Health(); err != nil {
			return err
		}
		select {
		case <-d.ready:
			return nil
		default:
			return errors.New("nats connected; setting up the queue")
		}
	}
	if d.cfg.MetricsAddr != "" {
		addr, stop, err := serveHTTP(ctx, d.cfg.MetricsAddr, d.m, health, d.log)
		if err != nil {
			return err
		}
		defer stop()
		d.httpAddr = addr
	}
	nc, err := dialer.Dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			d.log.Info("worker stopped before nats was reachable")
			return nil
		}
		return err
	}
	defer nc.Close()
	return d.Serve(ctx, nc)
}

// Serve pulls and runs jobs over nc until ctx ends. Then it stops pulling, lets
// running jobs finish within the grace period, cancels the rest and hands them back
// to the queue. It returns once no job is left; nc stays open.
func (d *Daemon) Serve(ctx context.Context, nc *nats.Conn) error {
	q, cons, err := d.openQueue(ctx, nc)
	if err != nil {
		return err
	}
	stopCancels, err := q.WatchCancels(d.cancelJob)
	if err != nil {
		return err
	}
	defer stopCancels()
	if d.cfg.MetricsAddr != "" && d.httpAddr == nil { // Run serves it from before connecting
		addr, stop, err := serveHTTP(ctx, d.cfg.MetricsAddr, d.m, func() error {
			if !nc.IsConnected() {
				return fmt.Errorf("nats %s", nc.Status())
			}
			return nil
		}, d.log)
		if err != nil {
			return err
		}
		defer stop()
		d.httpAddr = addr
	}
	d.log.Info("worker started", "concurrency", d.cfg.Concurrency, "ack_wait", d.ackWait,
		"max_deliver", d.maxDeliver, "http", d.httpAddr)
	stopBeat := d.announce(ctx, q)
	defer stopBeat()
	close(d.ready)

	// Jobs run on a context that survives ctx so they can finish within the grace
	// period; it is cancelled with errShutdown when the grace period ends.
	jobsCtx, cancelJobs := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelJobs(nil)
	var wg sync.WaitGroup
	d.pull(ctx, cons, &wg, func(msg jetstream.Msg) { d.handle(ctx, jobsCtx, q, msg) })

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

// openQueue opens (or, on an empty server, sets up) the queue and its shared
// consumer, and adopts the queue's settings over this worker's flags.
func (d *Daemon) openQueue(ctx context.Context, nc *nats.Conn) (*queue.Queue, jetstream.Consumer, error) {
	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	q, created, err := queue.Ensure(setupCtx, nc, d.cfg.queueConfig(), d.cfg.WorkerID)
	if err != nil {
		return nil, nil, err
	}
	cons, err := q.Consumer(setupCtx)
	if err != nil {
		return nil, nil, err
	}
	settings := q.Settings()
	d.ackWait, d.maxDeliver = settings.AckWait.D(), settings.MaxDeliver
	if created {
		d.log.Info("queue set up with this worker's settings", "ack_wait", d.ackWait, "max_deliver", d.maxDeliver,
			"replicas", settings.Replicas)
	} else if diff := settings.Differences(d.cfg.queueConfig()); len(diff) > 0 {
		d.log.Warn("queue settings differ from this worker's flags; following the queue's (change them with imagevet queue setup)",
			"differences", diff, "set_by", settings.SetBy)
	}
	return q, cons, nil
}

// pull takes one message per free slot until ctx ends, handing each to handle on
// its own goroutine (counted in wg).
func (d *Daemon) pull(ctx context.Context, cons jetstream.Consumer, wg *sync.WaitGroup, handle func(jetstream.Msg)) {
	slots := make(chan struct{}, d.cfg.Concurrency)
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		// No fetch context: a pull that ends by its own expiry never strands a
		// message in flight.
		msg, err := cons.Next(jetstream.FetchMaxWait(d.cfg.FetchWait))
		if err != nil {
			<-slots
			if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
				d.log.Warn("pull failed", "err", err)
				_ = retry.Wait(ctx, time.Second)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			handle(msg)
		}()
	}
}

// delivery is one delivered job message and what the daemon knows about it.
type delivery struct {
	msg      jetstream.Msg
	seq      uint64 // jobs-stream sequence
	replaces uint64 // result sequence a rerun replaces, or 0
	jobID    string // once decoded
	log      *slog.Logger
	hb       func()       // stops the heartbeat (idempotent)
	stage    *stageWriter // the attempt's job state, once claimed
}

// handle settles one delivered job: attempt decides, finish carries the decision
// out. stop is the daemon's context (shutdown started when it ends); jobsCtx is what
// runners run on.
func (d *Daemon) handle(stop, jobsCtx context.Context, q *queue.Queue, msg jetstream.Msg) {
	d.m.jobsRunning.Inc()
	defer d.m.jobsRunning.Dec()
	meta, err := msg.Metadata()
	if err != nil {
		d.log.Error("job message without metadata", "err", err)
		d.settle(msg, actionTerm, 0, d.log)
		return
	}
	d.m.queueLag.Observe(time.Since(meta.Timestamp).Seconds())
	dl := &delivery{msg: msg, seq: meta.Sequence.Stream, replaces: queue.ReplacesOf(msg.Headers()),
		log: d.log.With("seq", meta.Sequence.Stream, "delivery", meta.NumDelivered)}
	dl.hb = d.heartbeat(msg, dl.log)
	defer dl.hb()
	d.finish(stop, q, dl, d.attempt(stop, jobsCtx, q, dl, meta))
}

// attempt decides what becomes of one delivery, running the job when it should.
// Attempts are counted in the queue's job state, not by the server's delivery
// count, so naks that ran nothing (a failed read, shutdown) use none up and the
// last attempt always ends in a result: a delivery beyond the limit reports the
// final error without running.
func (d *Daemon) attempt(stop, jobsCtx context.Context, q *queue.Queue, dl *delivery, meta *jetstream.MsgMetadata) settlement {
	job, err := jobs.DecodeJob(dl.msg.Data())
	if err != nil {
		return d.rejection(dl, err)
	}
	job = job.WithDefaults()
	dl.jobID = job.ID
	dl.log = dl.log.With("job", job.ID, "image", job.Publish.Name)
	log := dl.log

	// A cancellation may arrive from here on: the attempt's context is registered
	// before anything is decided.
	jobCtx, cancelJob := context.WithCancelCause(jobsCtx)
	defer cancelJob(nil)
	defer d.track(job.ID, cancelJob)()

	st, s, ok := d.claim(stop, q, dl, job)
	if !ok {
		return s
	}
	attempt := st.Attempt
	log = log.With("attempt", attempt)
	dl.log = log
	dl.stage = newStageWriter(q, st, log)

	note := func(stage, event, msg string) {
		p := jobs.Progress{JobID: job.ID, Attempt: attempt, Worker: d.cfg.WorkerID, Stage: stage, Event: event, Message: msg}
		if err := q.PublishProgress(p); err != nil {
			log.Debug("progress not sent", "err", err)
		}
	}
	note("queue", "done", fmt.Sprintf("picked up by worker %s (attempt %d, queued %s)", d.cfg.WorkerID, attempt,
		time.Since(meta.Timestamp).Round(time.Millisecond)))
	dl.stage.set("admission")
	release, s, ok := d.admission(stop, job, st, note, log)
	if !ok {
		return s
	}
	started := time.Now().UTC()
	res := d.run(jobCtx, q, job, attempt, dl.stage.set, log)
	cause := context.Cause(jobCtx)
	cancelJob(nil)
	release()
	var cancelled *CancelledError
	res = d.complete(res, job, attempt, started)
	compare(stop, q, &res, job, log)
	s = decideRun(runEnd{res: res, cancelled: errors.As(cause, &cancelled),
		shutdown: context.Cause(jobsCtx) == errShutdown, worker: d.cfg.WorkerID,
		attempts: st.Attempts, maxDeliver: d.maxDeliver, retryDelay: d.cfg.retryDelay(st.Attempts)})
	if d.noteSettlement(s, st, cancelled, note, log) {
		for _, stg := range res.Stages {
			d.m.stages.WithLabelValues(stg.Name).Observe(stg.Duration.D().Seconds())
		}
	}
	return s
}

// admission waits until the host can give the job's memory (machine and overhead)
// and returns its release; when it cannot, the job goes back to the queue for
// another worker, or ends once no worker could in the attempts it had.
func (d *Daemon) admission(stop context.Context, job jobs.Job, st queue.JobState, note func(stage, event, msg string), log *slog.Logger) (func(), settlement, bool) {
	need := int64(job.Machine.MemoryMiB + d.cfg.MemoryOverheadMiB)
	release, ok := d.admit(stop, need, func(free int64) {
		note("admission", "info", fmt.Sprintf("waiting for %d MiB of memory (%d MiB free)", need, free))
	}, log)
	if ok {
		return release, settlement{}, true
	}
	s := decideAdmission(admissionEnd{shutdown: stop.Err() != nil, worker: d.cfg.WorkerID, needMiB: need,
		attempts: st.Attempts, maxDeliver: d.maxDeliver, retry: d.cfg.AdmissionRetry,
		final: func(reason string) jobs.Result {
			res := d.errorResult(job.ID, st.Attempt, reason, true)
			res.Publish = job.Publish
			res.ListNotRun(job, "no worker could admit the job")
			return res
		}})
	if s.action == actionAdmission {
		d.m.admissionNaks.Inc()
		note("admission", "info", fmt.Sprintf("this host cannot give %d MiB now; back to the queue for %s", need, d.cfg.AdmissionRetry))
	}
	return nil, s, false
}

// noteSettlement logs how a job that ran is settled, and tells its page when it
// goes back to the queue to be tried again. It returns whether the run's stage
// times count in the metrics: not for a job cancelled, by an operator or by
// shutdown.
func (d *Daemon) noteSettlement(s settlement, st queue.JobState, cancelled *CancelledError, note func(stage, event, msg string), log *slog.Logger) bool {
	switch s.action {
	case actionCancelled:
		// `imagevet cancel` reported the job already; nothing to add.
		log.Info("job cancelled", "reason", cancelled.Reason)
		return false
	case actionShutdown:
		// Cancelled by shutdown: not a verdict, and not an attempt used up.
		// Another worker takes it.
		log.Info("job cancelled by shutdown, handing it back")
		return false
	case actionRetry:
		log.Warn("retryable error, job goes back to the queue", "reason", s.why, "delay", s.delay)
		note("retry", "info", fmt.Sprintf("attempt %d of %d: %s; retrying in %s", st.Attempts, d.maxDeliver, s.why, s.delay))
	}
	return true
}

// track registers the cancel func of a job's running attempt; the returned func
// removes it.
func (d *Daemon) track(jobID string, cancel context.CancelCauseFunc) (untrack func()) {
	d.mu.Lock()
	d.running[jobID] = cancel
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		delete(d.running, jobID)
		d.mu.Unlock()
	}
}

// cancelJob stops a running job on `imagevet cancel`.
func (d *Daemon) cancelJob(jobID, reason string) {
	d.mu.Lock()
	cancel := d.running[jobID]
	d.mu.Unlock()
	if cancel != nil {
		d.log.Info("cancel requested", "job", jobID, "reason", reason)
		cancel(&CancelledError{Reason: reason})
	}
}

// runningJobs lists the job ids this worker holds.
func (d *Daemon) runningJobs() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := make([]string, 0, len(d.running))
	for id := range d.running {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// announce keeps this worker's heartbeat entry in BucketWorkers fresh until the
// returned stop, which removes it.
func (d *Daemon) announce(ctx context.Context, q *queue.Queue) (stop func()) {
	host, _ := os.Hostname()
	info := queue.WorkerInfo{ID: d.cfg.WorkerID, Host: host, PID: os.Getpid(), Version: d.cfg.Version,
		Accel: d.cfg.Accel, AccelReason: d.cfg.AccelReason, Slots: d.cfg.Concurrency, StartedAt: time.Now().UTC()}
	put := func(draining bool) {
		info.Running, info.Draining, info.Heartbeat = d.runningJobs(), draining, time.Now().UTC()
		opCtx, cancel := opContext(ctx)
		defer cancel()
		if err := q.PutWorker(opCtx, info); err != nil {
			d.log.Warn("worker heartbeat failed", "err", err)
		}
	}
	put(false)
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(queue.WorkerHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				put(ctx.Err() != nil)
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
		opCtx, cancel := opContext(ctx)
		defer cancel()
		if err := q.RemoveWorker(opCtx, d.cfg.WorkerID); err != nil {
			d.log.Warn("removing the worker heartbeat failed", "err", err)
		}
	}
}

// stageWriter keeps a job's state entry up to date with the stage its attempt
// announced, written by a latest so a slow NATS never blocks the runner; only the
// latest stage is written.
type stageWriter struct {
	q      *queue.Queue
	log    *slog.Logger
	mu     sync.Mutex
	st     queue.JobState
	closed bool
	writer *latest[queue.JobState]
}

func newStageWriter(q *queue.Queue, st queue.JobState, log *slog.Logger) *stageWriter {
	return &stageWriter{q: q, log: log, st: st, writer: newLatest(func(st queue.JobState) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.PutJobState(ctx, st); err != nil {
			log.Debug("job state not written", "err", err)
		}
	})}
}

// set records a new stage without blocking; a closed writer ignores it.
func (w *stageWriter) set(stage string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st.Stage == stage || w.closed {
		return
	}
	w.st.Stage = stage
	w.writer.set(w.st)
}

// close stops the writer after its last write; idempotent.
func (w *stageWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.writer.close()
}

// retrying marks the job as waiting for its retry (the attempt counts).
func (w *stageWriter) retrying(stop context.Context, why string) {
	w.closeWith(stop, func(st *queue.JobState) { st.State, st.Stage, st.LastError = queue.StateRetrying, "", why })
}

// handBack marks the attempt as not made: the job goes back to the queue without
// using one up (shutdown, lack of memory while shutting down).
func (w *stageWriter) handBack(stop context.Context, why string) {
	w.closeWith(stop, func(st *queue.JobState) {
		st.State, st.Stage, st.Attempts, st.Attempt = queue.StateQueued, "", st.Attempts-1, st.Attempt-1
		if why != "" {
			st.LastError = why
		}
	})
}

func (w *stageWriter) closeWith(stop context.Context, change func(*queue.JobState)) {
	w.close()
	w.mu.Lock()
	change(&w.st)
	st := w.st
	w.mu.Unlock()
	ctx, cancel := opContext(stop)
	defer cancel()
	if err := w.q.PutJobState(ctx, st); err != nil {
		w.log.Warn("job state not written", "err", err)
	}
}

// run calls the runner, turning a panic into an error result.
func (d *Daemon) run(ctx context.Context, q *queue.Queue, job jobs.Job, attempt int, stage func(string), log *slog.Logger) (res jobs.Result) {
	d.m.vmsRunning.Inc()
	defer d.m.vmsRunning.Dec()
	defer func() {
		if p := recover(); p != nil {
			log.Error("runner panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			res = d.errorResult(job.ID, attempt, fmt.Sprintf("internal error: runner panicked: %v", p), false)
			res.ListNotRun(job, "the runner panicked")
		}
	}()
	log.Info("job started", "memory_mib", job.Machine.MemoryMiB)
	live := newLatest(func(c jobs.LiveConsole) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.PutLiveConsole(ctx, c); err != nil {
			log.Debug("live console not written", "err", err)
		}
	})
	defer live.close()
	progress := func(p jobs.Progress) {
		p.JobID, p.Attempt, p.Worker = job.ID, attempt, d.cfg.WorkerID
		if p.Event == jobs.EventConsole {
			// The page's copy of the console, not an event for followers.
			if p.Console != nil {
				c := *p.Console
				c.JobID, c.Attempt, c.Worker = job.ID, attempt, d.cfg.WorkerID
				live.set(c)
			}
			return
		}
		if p.Event == "start" {
			stage(p.Stage)
		}
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

// claim records a new attempt at the job in the queue's job state, unless the job
// was reported already, its attempts are used up, or the queue cannot be read: then
// ok is false and the settlement says what to do instead.
func (d *Daemon) claim(stop context.Context, q *queue.Queue, dl *delivery, job jobs.Job) (st queue.JobState, s settlement, ok bool) {
	log := dl.log
	// Dedupe on run: a job already reported (a resubmission after the dedupe
	// window, or a worker that died between report and ack) is not run again; a
	// rerun runs while the result it replaces is still the job's.
	opCtx, cancel := opContext(stop)
	prev, prevSeq, found, err := q.ResultSeq(opCtx, job.ID)
	cancel()
	switch {
	case err != nil:
		log.Warn("cannot read results, handing the job back", "err", err)
		return st, settlement{action: actionRetry, delay: d.cfg.AdmissionRetry}, false
	case found && prevSeq != dl.replaces:
		opCtx, cancel := opContext(stop)
		if err := q.EnsureStatus(opCtx, prev); err != nil {
			log.Warn("status update failed", "err", err)
		}
		cancel()
		log.Info("job already reported, not running it again", "verdict", prev.Verdict)
		return st, settlement{action: actionDuplicate, state: stateForget}, false
	case stop.Err() != nil:
		return st, settlement{action: actionShutdown}, false
	}
	base := 0
	if dl.replaces > 0 {
		base = prev.Attempt
	}
	opCtx, cancel = opContext(stop)
	var exhausted bool
	st, exhausted, err = q.ClaimAttempt(opCtx, job.ID, dl.seq, job.Publish.Name, d.cfg.WorkerID, base, d.maxDeliver)
	cancel()
	switch {
	case err != nil:
		log.Warn("cannot record the attempt, handing the job back", "err", err)
		return st, settlement{action: actionRetry, delay: d.cfg.AdmissionRetry}, false
	case exhausted:
		why := st.LastError
		if why == "" {
			why = "the last attempt ended without a result"
		}
		log.Warn("attempts exhausted, reporting the final error", "attempts", st.Attempts, "last_error", why)
		res := d.errorResult(job.ID, st.Attempt, fmt.Sprintf("gave up after %d attempts: %s", st.Attempts, why), true)
		res.Publish = job.Publish
		res.ListNotRun(job, fmt.Sprintf("gave up after %d attempts", st.Attempts))
		return st, reported(res, actionAck), false
	}
	return st, settlement{}, true
}

// rejection reports an invalid job with an error result naming the problem, then
// terminates it.
func (d *Daemon) rejection(dl *delivery, cause error) settlement {
	id, name := queue.RawJobID(dl.msg.Data())
	if id == "" {
		id = fmt.Sprintf("invalid-seq-%d", dl.seq)
	}
	if name == "" {
		name = id
	}
	dl.log = dl.log.With("job", id, "image", name)
	dl.log.Warn("invalid job", "err", cause)
	attempt := 1
	if meta, err := dl.msg.Metadata(); err == nil {
		attempt = int(meta.NumDelivered)
	}
	res := d.errorResult(id, attempt, cause.Error(), false)
	// The image's status shows the error too, so nothing publishes it on an old verdict.
	res.Publish.Name = name
	return settlement{action: actionTerm, result: &res, state: stateForget}
}

func (d *Daemon) errorResult(id string, attempt int, reason string, retryable bool) jobs.Result {
	now := time.Now().UTC()
	return jobs.Result{
		Version: jobs.Version, JobID: id, Verdict: jobs.VerdictError, Retryable: retryable,
		Reason: reason, Checks: []jobs.CheckResult{}, Stages: []jobs.Stage{},
		Worker: d.cfg.WorkerID, Attempt: attempt, StartedAt: now, FinishedAt: now,
	}
}

func (d *Daemon) publish(stop context.Context, q *queue.Queue, res jobs.Result, replaces uint64, log *slog.Logger) (bool, error) {
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
	if replaces > 0 {
		return q.PublishResult(ctx, res, console, queue.Replacing(replaces))
	}
	return q.PublishResult(ctx, res, console)
}

// heartbeat sends InProgress every AckWait/3 until the returned stop is called
// (idempotent), so a long job is not redelivered.
func (d *Daemon) heartbeat(msg jetstream.Msg, log *slog.Logger) (stop func()) {
	t := time.NewTicker(d.ackWait / 3)
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
