package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
)

// Job states as JobState.State and QueueEntry.State show them.
const (
	// StateQueued: submitted, no attempt running (none yet, or handed back).
	StateQueued = "queued"
	// StateRunning: a worker holds the job and runs an attempt.
	StateRunning = "running"
	// StateRetrying: the last attempt ended in a retryable error; the job waits for
	// its retry delay.
	StateRetrying = "retrying"
)

// HeaderReplaces, on a job message, carries the results-stream sequence of the
// result a rerun (`submit --rerun`) replaces.
const HeaderReplaces = "Imagevet-Replaces"

// JobState is what workers record in BucketJobs about one submission of a job while
// it is in the queue: how many attempts were made (workers enforce the attempt limit
// from it), and what the current one is doing. Documented for readers such as the
// web Queue page.
type JobState struct {
	JobID string `json:"job_id"`
	// Seq is the jobs-stream sequence of the submission (a rerun is a new one).
	Seq uint64 `json:"seq"`
	// Image is the job's publish.name (or "").
	Image string `json:"image,omitempty"`
	// State is StateQueued, StateRunning or StateRetrying.
	State string `json:"state"`
	// Attempts is how many attempts were started on this submission.
	Attempts int `json:"attempts"`
	// Attempt is the job's attempt number as results show it (a rerun continues
	// from the replaced result's attempt).
	Attempt int `json:"attempt"`
	// Stage is the stage the running attempt announced last (fetch, boot, ssh…).
	Stage string `json:"stage,omitempty"`
	// Worker runs (or last ran) the job.
	Worker string `json:"worker,omitempty"`
	// LastError is why the previous attempt ended without a verdict.
	LastError string    `json:"last_error,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at"`
}

// JobStateKey is the BucketJobs key of one submission of a job.
func JobStateKey(jobID string, seq uint64) string {
	return jobID + "." + strconv.FormatUint(seq, 10)
}

// ClaimAttempt records, compare-and-set, that worker starts the next attempt on the
// submission seq of a job, unless max attempts were already started: then it
// returns the state as it is and exhausted=true (the caller reports the final
// error). base is the attempt number the job's results continue from (0, or the
// replaced result's for a rerun).
func (q *Queue) ClaimAttempt(ctx context.Context, jobID string, seq uint64, image, worker string, base, max int) (st JobState, exhausted bool, err error) {
	key := JobStateKey(jobID, seq)
	for range 5 {
		var rev uint64
		st = JobState{JobID: jobID, Seq: seq, Image: image}
		entry, err := q.states.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return JobState{}, false, fmt.Errorf("read job state %s: %w", key, err)
		default:
			rev = entry.Revision()
			if err := json.Unmarshal(entry.Value(), &st); err != nil {
				return JobState{}, false, fmt.Errorf("job state %s: %w", key, err)
			}
		}
		if st.State == StateRunning && st.Worker != "" {
			// The server redelivered: the attempt before never settled.
			st.LastError = fmt.Sprintf("attempt %d on worker %s ended without a result (worker gone or unresponsive)", st.Attempt, st.Worker)
		}
		if st.Attempts >= max {
			return st, true, nil
		}
		now := time.Now().UTC()
		st.Attempts++
		st.Attempt = base + st.Attempts
		st.State, st.Stage, st.Worker, st.StartedAt, st.UpdatedAt = StateRunning, "queue", worker, now, now
		data, err := json.Marshal(st)
		if err != nil {
			return JobState{}, false, fmt.Errorf("encode job state: %w", err)
		}
		won, err := CompareAndSet(ctx, q.states, key, data, rev)
		if err != nil {
			return JobState{}, false, fmt.Errorf("write job state %s: %w", key, err)
		}
		if won {
			return st, false, nil
		}
	}
	return JobState{}, false, fmt.Errorf("write job state %s: too much contention", key)
}

// PutJobState overwrites a submission's state (the worker holding it announces a
// stage, or hands it back).
func (q *Queue) PutJobState(ctx context.Context, st JobState) error {
	st.UpdatedAt = time.Now().UTC()
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode job state: %w", err)
	}
	if _, err := q.states.Put(ctx, JobStateKey(st.JobID, st.Seq), data); err != nil {
		return fmt.Errorf("write job state %s: %w", JobStateKey(st.JobID, st.Seq), err)
	}
	return nil
}

// ForgetJobState removes a settled submission's state.
func (q *Queue) ForgetJobState(ctx context.Context, jobID string, seq uint64) error {
	if err := q.states.Purge(ctx, JobStateKey(jobID, seq)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("forget job state %s: %w", JobStateKey(jobID, seq), err)
	}
	return nil
}

// QueueEntry is one submission in the queue as `imagevet jobs` lists it: submitted and not
// yet settled, with what its state entry and the worker heartbeats say.
type QueueEntry struct {
	JobID string `json:"job_id"`
	Image string `json:"image,omitempty"`
	// Family is the job's publish.family (or "").
	Family string `json:"family,omitempty"`
	// Seq is the jobs-stream sequence of the submission.
	Seq         uint64    `json:"seq"`
	SubmittedAt time.Time `json:"submitted_at"`
	// State is StateQueued, StateRunning or StateRetrying.
	State string `json:"state"`
	// Attempt is the current (running) or last attempt number; 0 before the first.
	Attempt int    `json:"attempt"`
	Stage   string `json:"stage,omitempty"`
	Worker  string `json:"worker,omitempty"`
	// WorkerAlive is false when the worker named has no live heartbeat: the job
	// goes to another worker once its ack wait passes.
	WorkerAlive bool      `json:"worker_alive"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	// Rerun is set on a submission made with `submit --rerun`.
	Rerun bool `json:"rerun,omitempty"`
}

// maxListed bounds how many submissions Jobs reads.
const maxListed = 10000

// Jobs lists the submissions still in the jobs stream (queued or running), oldest
// first, joined with their state entries and the worker heartbeats.
func (q *Queue) Jobs(ctx context.Context) ([]QueueEntry, error) {
	msgs, err := q.queuedMsgs(ctx, "")
	if err != nil {
		return nil, err
	}
	alive := map[string]bool{}
	ws, err := q.Workers(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		alive[w.ID] = true
	}
	out := make([]QueueEntry, 0, len(msgs))
	for _, m := range msgs {
		id, image := RawJobID(m.Data)
		j := QueueEntry{JobID: id, Image: image, Family: rawFamily(m.Data), Seq: m.Sequence, SubmittedAt: m.Time.UTC(), State: StateQueued,
			Rerun: m.Header.Get(HeaderReplaces) != ""}
		if id != "" {
			entry, err := q.states.Get(ctx, JobStateKey(id, m.Sequence))
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				return nil, fmt.Errorf("read job state of %s: %w", id, err)
			default:
				var st JobState
				if json.Unmarshal(entry.Value(), &st) == nil {
					j.State, j.Attempt, j.Stage, j.Worker, j.StartedAt, j.LastError =
						st.State, st.Attempt, st.Stage, st.Worker, st.StartedAt, st.LastError
					j.WorkerAlive = alive[st.Worker]
				}
			}
		}
		out = append(out, j)
	}
	return out, nil
}

// queuedMsgs returns the messages in the jobs stream, of one job id when jobID is
// set, oldest first.
func (q *Queue) queuedMsgs(ctx context.Context, jobID string) ([]*jetstream.RawStreamMsg, error) {
	info, err := q.jobs.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", StreamJobs, err)
	}
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && len(out) < maxListed; seq++ {
		m, err := q.jobs.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // acked or deleted
		}
		if err != nil {
			return nil, fmt.Errorf("read %s seq %d: %w", StreamJobs, seq, err)
		}
		if jobID != "" {
			if id, _ := RawJobID(m.Data); id != jobID {
				continue
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// RawJobID digs the job id and image name out of a job document that may not decode
// strictly; either is "" when it cannot be had, so even an invalid job is reported
// under its id.
func RawJobID(data []byte) (id, image string) {
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
	if json.Unmarshal(doc.Publish.Name, &image) != nil || len(image) > 255 {
		image = ""
	}
	return id, image
}

// rawFamily digs a valid publish.family out of a job document that may not decode
// strictly, or "".
func rawFamily(data []byte) string {
	var doc struct {
		Publish struct {
			Family string `json:"family"`
		} `json:"publish"`
	}
	if json.Unmarshal(data, &doc) != nil || !jobs.ValidFamily(doc.Publish.Family) {
		return ""
	}
	return doc.Publish.Family
}

// Rerun queues a job again although it already has a result: the new submission
// carries HeaderReplaces with the result's sequence, and its result replaces that
// one (recorded as the next attempt). Without a result yet it is a plain Submit.
func (q *Queue) Rerun(ctx context.Context, job jobs.Job) (Acceptance, error) {
	if err := job.Validate(); err != nil {
		return Acceptance{}, err
	}
	msg, err := q.results.GetLastMsgForSubject(ctx, ResultSubject(job.ID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return q.Submit(ctx, job)
	}
	if err != nil {
		return Acceptance{}, fmt.Errorf("read result of %s: %w", job.ID, err)
	}
	data, err := json.Marshal(job)
	if err != nil {
		return Acceptance{}, fmt.Errorf("encode job: %w", err)
	}
	m := nats.NewMsg(SubjectSubmit)
	m.Data = data
	m.Header.Set(HeaderReplaces, strconv.FormatUint(msg.Sequence, 10))
	// One rerun per replaced result: submitting the same rerun twice is a no-op.
	ack, err := q.js.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("%s.rerun.%d", job.ID, msg.Sequence)),
		jetstream.WithExpectStream(StreamJobs))
	if err != nil {
		return Acceptance{}, fmt.Errorf("submit rerun of %s: %w", job.ID, err)
	}
	return Acceptance{JobID: job.ID, Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate,
		Replaces: msg.Sequence}, nil
}

// ReplacesOf returns the result sequence a job message replaces (HeaderReplaces),
// or 0.
func ReplacesOf(h nats.Header) uint64 {
	n, err := strconv.ParseUint(h.Get(HeaderReplaces), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// CancelOutcome is what Cancel did.
type CancelOutcome struct {
	// Result is the job's final result: the cancellation, or the verdict that was
	// already there (Cancelled false).
	Result    jobs.Result `json:"result"`
	Cancelled bool        `json:"cancelled"`
	// Removed is how many queued submissions of the job were deleted.
	Removed int `json:"removed"`
	// WasRunning is set when a worker was running the job (it was told to stop).
	WasRunning bool `json:"was_running"`
}

// ErrUnknownJob is returned by Cancel for a job id with neither a submission in the
// queue nor a result.
var ErrUnknownJob = errors.New("no such job in the queue and no result")

// Cancel ends a queued or running job with an error result saying who cancelled it
// (the first result wins, so a verdict already reported stays), removes its queued
// submissions and tells a worker running it to stop.
func (q *Queue) Cancel(ctx context.Context, jobID, by, reason string) (CancelOutcome, error) {
	if !jobs.ValidJobID(jobID) {
		return CancelOutcome{}, fmt.Errorf("cancel: invalid job id %q", jobID)
	}
	msgs, err := q.queuedMsgs(ctx, jobID)
	if err != nil {
		return CancelOutcome{}, err
	}
	existing, seq, found, err := q.result(ctx, jobID)
	if err != nil {
		return CancelOutcome{}, err
	}
	replaces, pending := pendingSubmission(msgs, found, seq)
	if !pending {
		if found {
			return CancelOutcome{Result: existing}, nil
		}
		return CancelOutcome{}, fmt.Errorf("cancel %s: %w", jobID, ErrUnknownJob)
	}
	out := CancelOutcome{}
	res := jobs.Result{Version: jobs.Version, JobID: jobID, Verdict: jobs.VerdictError, FailedCheck: "cancel",
		Reason: "cancelled by " + by, Checks: []jobs.CheckResult{}, Stages: []jobs.Stage{}, Worker: by}
	if reason != "" {
		res.Reason += ": " + reason
	}
	out.WasRunning = q.describeCancelled(ctx, &res, msgs, replaces)
	if res.Attempt == 0 && found {
		res.Attempt = existing.Attempt
	}
	now := time.Now().UTC()
	res.StartedAt, res.FinishedAt = now, now
	var opts []PublishOption
	if replaces > 0 {
		opts = append(opts, Replacing(replaces))
	}
	published, err := q.PublishResult(ctx, res, nil, opts...)
	if err != nil {
		return CancelOutcome{}, err
	}
	final, _, _, err := q.result(ctx, jobID)
	if err != nil {
		return CancelOutcome{}, err
	}
	out.Result, out.Cancelled = final, published
	err = q.removeAndStop(ctx, jobID, msgs, res.Reason, &out)
	return out, err
}

// pendingSubmission finds the submission a cancel settles among the job's queued
// ones: with no result yet, any; with one, a resubmission replacing it (seq).
// replaces is what that submission replaces.
func pendingSubmission(msgs []*jetstream.RawStreamMsg, found bool, seq uint64) (replaces uint64, pending bool) {
	for _, m := range msgs {
		r := ReplacesOf(m.Header)
		if !found || r == seq {
			pending, replaces = true, r
		}
	}
	return replaces, pending
}

// describeCancelled fills the cancellation res from the submissions it settles
// (those replacing replaces): the image's name, the checks not run, the attempt;
// it reports whether a worker was running one.
func (q *Queue) describeCancelled(ctx context.Context, res *jobs.Result, msgs []*jetstream.RawStreamMsg, replaces uint64) (wasRunning bool) {
	for _, m := range msgs {
		if ReplacesOf(m.Header) != replaces {
			continue
		}
		_, image := RawJobID(m.Data)
		res.Publish.Name = image
		if job, err := jobs.DecodeJob(m.Data); err == nil && len(res.Checks) == 0 {
			res.ListNotRun(job, "cancelled")
		}
		entry, err := q.states.Get(ctx, JobStateKey(res.JobID, m.Sequence))
		if err == nil {
			var st JobState
			if json.Unmarshal(entry.Value(), &st) == nil {
				res.Attempt = st.Attempt
				wasRunning = wasRunning || st.State == StateRunning
			}
		}
	}
	return wasRunning
}

// removeAndStop removes the job's queued submissions (counted in out.Removed),
// then tells a worker running one to stop (its ack then finds nothing, which is
// fine: the result is there).
func (q *Queue) removeAndStop(ctx context.Context, jobID string, msgs []*jetstream.RawStreamMsg, reason string, out *CancelOutcome) error {
	for _, m := range msgs {
		if err := q.jobs.DeleteMsg(ctx, m.Sequence); err == nil {
			out.Removed++
		} else if _, gerr := q.jobs.GetMsg(ctx, m.Sequence); !errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("remove %s seq %d: %w", jobID, m.Sequence, err)
		}
		_ = q.ForgetJobState(ctx, jobID, m.Sequence)
	}
	if err := q.nc.Publish(SubjectCancelPrefix+jobID, []byte(reason)); err != nil {
		return fmt.Errorf("tell workers to stop %s: %w", jobID, err)
	}
	if err := q.nc.FlushTimeout(10 * time.Second); err != nil {
		return fmt.Errorf("tell workers to stop %s: %w", jobID, err)
	}
	return nil
}

// WatchCancels calls fn(jobID, reason) for every cancellation until stop is called.
func (q *Queue) WatchCancels(fn func(jobID, reason string)) (stop func(), err error) {
	sub, err := q.nc.Subscribe(SubjectCancelPrefix+"*", func(m *nats.Msg) {
		fn(m.Subject[len(SubjectCancelPrefix):], string(m.Data))
	})
	if err != nil {
		return nil, fmt.Errorf("watch cancellations: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// JobStatesOf returns the state entries of a job's submissions being worked on
// (claimed at least once), without reading the jobs stream: what a page asks many
// times about one running job. A submission no worker has claimed yet has none.
func (q *Queue) JobStatesOf(ctx context.Context, jobID string) ([]JobState, error) {
	if !jobs.ValidJobID(jobID) {
		return nil, fmt.Errorf("job states of %q: invalid job id", jobID)
	}
	w, err := q.states.Watch(ctx, jobID+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("job states of %s: %w", jobID, err)
	}
	defer w.Stop()
	var out []JobState
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("job states of %s: %w", jobID, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return out, nil // the entries there were have all come
			}
			var st JobState
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return nil, fmt.Errorf("job state %s: %w", e.Key(), err)
			}
			out = append(out, st)
		}
	}
}
