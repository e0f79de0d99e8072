package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
)

// Acceptance is the server's answer to a submission.
type Acceptance struct {
	JobID    string `json:"job_id"`
	Stream   string `json:"stream"`
	Sequence uint64 `json:"seq"`
	// Duplicate is true when the job id was already submitted within the dedupe
	// window: nothing new was queued.
	Duplicate bool `json:"duplicate"`
	// Replaces is, for a rerun, the results-stream sequence of the result the
	// rerun's result replaces (see WaitAfter).
	Replaces uint64 `json:"replaces,omitempty"`
}

// Submit validates a job and queues it with its id as the message id, so submitting
// the same job again within the dedupe window is a no-op (Duplicate is set).
func (q *Queue) Submit(ctx context.Context, job jobs.Job) (Acceptance, error) {
	if err := job.Validate(); err != nil {
		return Acceptance{}, err
	}
	data, err := json.Marshal(job)
	if err != nil {
		return Acceptance{}, fmt.Errorf("encode job: %w", err)
	}
	return q.SubmitRaw(ctx, job.ID, data)
}

// SubmitRaw queues an already encoded job document under the given id without
// validating it; workers reject invalid documents with an error result.
func (q *Queue) SubmitRaw(ctx context.Context, jobID string, data []byte) (Acceptance, error) {
	if !jobs.ValidJobID(jobID) {
		return Acceptance{}, fmt.Errorf("submit: invalid job id %q", jobID)
	}
	ack, err := q.js.Publish(ctx, SubjectSubmit, data,
		jetstream.WithMsgID(jobID), jetstream.WithExpectStream(StreamJobs))
	if err != nil {
		return Acceptance{}, fmt.Errorf("submit %s: %w", jobID, err)
	}
	return Acceptance{JobID: jobID, Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// Wait returns the final result of a job, at once when it is already there, otherwise
// when a worker publishes it; the image's status entry agrees with it on return.
// Progress events seen meanwhile go to progress (may be nil; use FollowProgress before submitting to miss none). It returns ctx's error
// when ctx ends first.
func (q *Queue) Wait(ctx context.Context, jobID string, progress func(jobs.Progress)) (jobs.Result, error) {
	return q.WaitAfter(ctx, jobID, 0, progress)
}

// waitPollInterval is how often WaitAfter reads the result directly besides
// following its consumer; waitRequestTimeout bounds each of its API requests.
var (
	waitPollInterval   = 5 * time.Second
	waitRequestTimeout = 10 * time.Second
)

// WaitAfter is Wait for a result stored after results-stream sequence after: the
// result of a rerun (Rerun's Acceptance.Replaces).
func (q *Queue) WaitAfter(ctx context.Context, jobID string, after uint64, progress func(jobs.Progress)) (jobs.Result, error) {
	if !jobs.ValidJobID(jobID) {
		return jobs.Result{}, fmt.Errorf("wait: invalid job id %q", jobID)
	}
	if progress != nil {
		stop, err := q.FollowProgress(jobID, progress)
		if err != nil {
			return jobs.Result{}, err
		}
		defer stop()
	}
	// An ordered consumer on the job's result subject delivers a result that is
	// already stored as well as one published later, and survives reconnects. It
	// is only the quick path: every API request here is bounded by
	// waitRequestTimeout, because a request that reaches a JetStream leader as it
	// dies is never answered (seen with a 3-node cluster losing a node: creating
	// the consumer then hung for the whole wait), and a direct read of the job's
	// last result every waitPollInterval finds a result the consumer missed.
	w := &resultWatch{q: q, jobID: jobID, after: after, results: make(chan jetstream.Msg, 1)}
	defer w.stop()
	w.follow(ctx)
	poll := time.NewTicker(waitPollInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return jobs.Result{}, ctx.Err()
		case <-poll.C:
			if r, ok := w.read(ctx); ok {
				return r, nil
			}
			w.follow(ctx)
		case m := <-w.results:
			r, err := jobs.DecodeResult(m.Data())
			if err != nil {
				return jobs.Result{}, fmt.Errorf("result of %s: %w", jobID, err)
			}
			// The winner writes the status entry right after its result; bringing it
			// up to date here too means whoever saw the result finds the status
			// agreeing, even if that worker died in between.
			_ = q.updateStatus(ctx, r)
			return r, nil
		}
	}
}

// resultWatch is how WaitAfter looks for a job's result stored after the
// results-stream sequence after: an ordered consumer delivering into results,
// and direct reads.
type resultWatch struct {
	q       *Queue
	jobID   string
	after   uint64
	results chan jetstream.Msg
	cc      jetstream.ConsumeContext
}

// follow starts the consumer unless it runs; a failed start is tried again at
// the next tick.
func (w *resultWatch) follow(ctx context.Context) {
	if w.cc != nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, waitRequestTimeout)
	defer cancel()
	cons, err := w.q.js.OrderedConsumer(cctx, StreamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{ResultSubject(w.jobID)},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return
	}
	w.cc, _ = cons.Consume(func(m jetstream.Msg) {
		if meta, err := m.Metadata(); err == nil && meta.Sequence.Stream <= w.after {
			return // the result a rerun replaces
		}
		select {
		case w.results <- m:
		default:
		}
	})
}

// stop stops the consumer, if it runs.
func (w *resultWatch) stop() {
	if w.cc != nil {
		w.cc.Stop()
	}
}

// read reads the job's last result directly, bringing its status up to date; a
// leaderless moment or no result yet is not found, and the next tick reads again.
func (w *resultWatch) read(ctx context.Context) (jobs.Result, bool) {
	rctx, cancel := context.WithTimeout(ctx, waitRequestTimeout)
	defer cancel()
	r, seq, ok, err := w.q.result(rctx, w.jobID)
	if err != nil || !ok || seq <= w.after {
		return jobs.Result{}, false
	}
	_ = w.q.updateStatus(rctx, r)
	return r, true
}

// FollowProgress calls fn (from one goroutine, in order) with the job's progress
// events until stop is called; events that arrived before stop are still delivered
// before stop returns. Subscribe before submitting to see every event.
func (q *Queue) FollowProgress(jobID string, fn func(jobs.Progress)) (stop func(), err error) {
	if !jobs.ValidJobID(jobID) {
		return nil, fmt.Errorf("follow progress: invalid job id %q", jobID)
	}
	return q.followProgress(ProgressSubject(jobID), fn)
}

// FollowAllProgress is FollowProgress for every job at once: what a dashboard uses to
// see which jobs are running where.
func (q *Queue) FollowAllProgress(fn func(jobs.Progress)) (stop func(), err error) {
	return q.followProgress(ProgressSubject("*"), fn)
}

func (q *Queue) followProgress(subject string, fn func(jobs.Progress)) (stop func(), err error) {
	events := make(chan *nats.Msg, 256)
	sub, err := q.nc.ChanSubscribe(subject, events)
	if err != nil {
		return nil, fmt.Errorf("follow progress on %s: %w", subject, err)
	}
	// Make sure the server has the subscription before anything is submitted.
	if err := q.nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("follow progress on %s: %w", subject, err)
	}
	quit, done := make(chan struct{}), make(chan struct{})
	deliver := func(m *nats.Msg) {
		var p jobs.Progress
		if json.Unmarshal(m.Data, &p) == nil {
			fn(p)
		}
	}
	go func() {
		defer close(done)
		for {
			select {
			case m := <-events:
				deliver(m)
			case <-quit:
				for {
					select {
					case m := <-events:
						deliver(m)
					default:
						return
					}
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = sub.Unsubscribe()
			close(quit)
			<-done
		})
	}, nil
}
