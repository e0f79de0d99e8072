package worker

import (
	"slices"
	"sync"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// recorder builds one job's result as the lifecycle runs: timed stages, checks, and
// live progress events. Safe for use from the console watcher's goroutine.
type recorder struct {
	mu       sync.Mutex
	res      jobs.Result
	job      jobs.Job
	progress func(jobs.Progress)
	now      func() time.Time
	// abort is the error that ended the job before its checks could decide, if any.
	abort      error
	abortCheck string
}

func newRecorder(job jobs.Job, attempt int, worker string, progress func(jobs.Progress), now func() time.Time) *recorder {
	if progress == nil {
		progress = func(jobs.Progress) {}
	}
	return &recorder{
		job:      job,
		progress: progress,
		now:      now,
		res: jobs.Result{
			Version:   jobs.Version,
			JobID:     job.ID,
			Worker:    worker,
			Attempt:   attempt,
			StartedAt: now().UTC(),
			Publish:   job.Publish,
			VettedWith: &jobs.VettedMachine{Firmware: job.Machine.Firmware, Type: job.Machine.Type,
				DiskBus: jobs.DiskBusVirtio, MemoryMiB: job.Machine.MemoryMiB, User: job.Guest.User},
			Checks: []jobs.CheckResult{},
			Stages: []jobs.Stage{},
		},
	}
}

func (r *recorder) emit(stage, event, msg string) {
	r.progress(jobs.Progress{JobID: r.res.JobID, Attempt: r.res.Attempt, Worker: r.res.Worker,
		Time: r.now().UTC(), Stage: stage, Event: event, Message: jobs.FirstLine(msg, 300)})
}

// console sends the console so far to the job's page (not recorded: the result
// carries the console at the end).
func (r *recorder) console(tail string, marks []jobs.ConsoleMark) {
	now := r.now().UTC()
	r.progress(jobs.Progress{JobID: r.res.JobID, Attempt: r.res.Attempt, Worker: r.res.Worker, Time: now,
		Stage: "console", Event: jobs.EventConsole,
		Console: &jobs.LiveConsole{JobID: r.res.JobID, Attempt: r.res.Attempt, Worker: r.res.Worker, Updated: now, Tail: tail, Marks: marks}})
}

// stage starts a timed lifecycle stage; call the returned func with the stage's error.
func (r *recorder) stage(name string) func(error) { return r.timed(name, true) }

// checkStage times a check's stage; its end is announced by the check's own result.
func (r *recorder) checkStage(name string) func(error) { return r.timed(name, false) }

func (r *recorder) timed(name string, announceEnd bool) func(error) {
	start := r.now()
	r.emit(name, "start", "")
	return func(err error) {
		st := jobs.Stage{Name: name, Start: start.UTC(), Duration: jobs.Duration(r.now().Sub(start))}
		if err != nil {
			st.Error = jobs.FirstLine(err.Error(), 300)
		}
		switch {
		case !announceEnd:
		case err != nil:
			r.emit(name, "fail", st.Error)
		default:
			r.emit(name, "done", "")
		}
		r.mu.Lock()
		r.res.Stages = append(r.res.Stages, st)
		r.mu.Unlock()
	}
}

// check records a check's outcome, marking whether it decides the verdict.
func (r *recorder) check(c jobs.CheckResult) {
	c.Required = r.job.Checks.IsRequired(c.Name)
	c.Reason = jobs.FirstLine(c.Reason, 300)
	event := string(c.Status)
	if c.Status == jobs.StatusFail && !c.Required {
		event = "warn"
	}
	r.emit(c.Name, event, c.Reason)
	r.mu.Lock()
	r.res.Checks = append(r.res.Checks, c)
	r.mu.Unlock()
}

// replace records c in place of an earlier result of the same check.
func (r *recorder) replace(c jobs.CheckResult) {
	r.mu.Lock()
	for i := range r.res.Checks {
		if r.res.Checks[i].Name == c.Name {
			r.res.Checks = append(r.res.Checks[:i], r.res.Checks[i+1:]...)
			break
		}
	}
	r.mu.Unlock()
	r.check(c)
}

// facts records what the ingest learned about the image.
func (r *recorder) facts(f *jobs.ImageFacts) {
	r.mu.Lock()
	r.res.ImageFacts = f
	r.mu.Unlock()
}

// inspection records the offline look inside the image.
func (r *recorder) inspection(ins *jobs.Inspection) {
	r.mu.Lock()
	r.res.Inspection = ins
	r.mu.Unlock()
}

// publication records the publication the result carries in place of the job's
// (its properties completed from the inspection).
func (r *recorder) publication(p jobs.Publication) {
	r.mu.Lock()
	r.res.Publish = p
	r.mu.Unlock()
}

// kept records a machine left running for debugging.
func (r *recorder) kept(k *jobs.KeptMachine) {
	r.mu.Lock()
	r.res.Kept = k
	r.mu.Unlock()
}

// warn records something a publisher should know although it fails nothing.
func (r *recorder) warn(stage, msg string) {
	msg = jobs.FirstLine(msg, 300)
	r.emit(stage, "warn", msg)
	r.mu.Lock()
	r.res.Warnings = append(r.res.Warnings, msg)
	r.mu.Unlock()
}

// info reports a notable event (a console milestone, a retry) without recording it.
func (r *recorder) info(stage, msg string) { r.emit(stage, "info", msg) }

// failed reports whether a required check has failed or errored so far.
func (r *recorder) failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.res.Checks {
		if c.Required && (c.Status == jobs.StatusFail || c.Status == jobs.StatusError) {
			return true
		}
	}
	return r.abort != nil
}

// stop records the error that ends the job early, attributed to a check (or stage)
// name. The first one wins.
func (r *recorder) stop(check string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.abort == nil {
		r.abort, r.abortCheck = err, check
	}
}

// finish decides the verdict and returns the result. The verdict follows the first
// required check that failed (image at fault), else the first that errored or the
// error that stopped the job; a job with neither passes. Every check of the job
// that did not run is listed as such, with what stopped the job.
func (r *recorder) finish() jobs.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := r.verdict()
	res.Checks = slices.Clone(res.Checks)
	switch {
	case res.Verdict == jobs.VerdictFail:
		res.ListNotRun(r.job, res.FailedCheck+" failed")
	case res.FailedCheck != "":
		res.ListNotRun(r.job, "the job stopped at "+res.FailedCheck+" with an error")
	default:
		res.ListNotRun(r.job, "the job ended before it")
	}
	return res
}

// verdict is the result with its verdict decided. r.mu must be held.
func (r *recorder) verdict() jobs.Result {
	res := r.res
	res.FinishedAt = r.now().UTC()
	res.Verdict = jobs.VerdictPass
	var firstErr *jobs.CheckResult
	for i := range res.Checks {
		c := &res.Checks[i]
		if !c.Required {
			continue
		}
		if c.Status == jobs.StatusFail {
			res.Verdict, res.FailedCheck, res.Reason = jobs.VerdictFail, c.Name, c.Reason
			return res
		}
		if c.Status == jobs.StatusError && firstErr == nil {
			firstErr = c
		}
	}
	if r.abort != nil {
		class, retry := Classify(r.abort)
		res.Verdict, res.Retryable = verdictOf(class), retry && class == ClassInfra
		res.FailedCheck, res.Reason = r.abortCheck, describe(r.abort)
		return res
	}
	if firstErr != nil {
		res.Verdict, res.FailedCheck, res.Reason = jobs.VerdictError, firstErr.Name, firstErr.Reason
		res.Retryable = true
	}
	return res
}
