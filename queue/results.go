package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
)

// PublishOption changes how PublishResult reports.
type PublishOption func(*publishOpts)

type publishOpts struct{ replaces uint64 }

// Replacing makes the result replace the stored result at results-stream sequence
// seq (a rerun) instead of requiring that the job has none.
func Replacing(seq uint64) PublishOption { return func(o *publishOpts) { o.replaces = seq } }

// PublishResult reports a job's final result, first result wins: the console log
// (when console is not nil) goes to its own object (ConsoleObject), then the result is
// published on its subject only if the job has no result yet (or, with Replacing,
// still has the replaced one); only the winner then brings the image's status entry
// up to date. A loser deletes its console object and brings the status entry up to
// date with the winner's result, so what a publisher reads (result, console, status)
// always agrees; both also record the verdict in the family's (BucketVetted).
// published reports whether r won. A worker that dies between the
// result and the status leaves the status to the next delivery, which finds the
// result and calls EnsureStatus. The console tail is capped at MaxConsoleTail.
func (q *Queue) PublishResult(ctx context.Context, r jobs.Result, console io.Reader, opts ...PublishOption) (published bool, err error) {
	var o publishOpts
	for _, opt := range opts {
		opt(&o)
	}
	if !jobs.ValidJobID(r.JobID) {
		return false, fmt.Errorf("publish result: invalid job id %q", r.JobID)
	}
	if r.Version == 0 {
		r.Version = jobs.Version
	}
	r.ConsoleTail = TailString(r.ConsoleTail, MaxConsoleTail)
	if existing, seq, ok, err := q.result(ctx, r.JobID); err != nil {
		return false, err
	} else if ok && seq != o.replaces {
		return false, q.reported(ctx, existing)
	}
	object := ""
	if console != nil {
		object = ConsoleObject(r.JobID, r.Attempt, r.Worker)
		if _, err := q.consoles.Put(ctx, jetstream.ObjectMeta{
			Name:        object,
			Description: fmt.Sprintf("serial console of job %s attempt %d", r.JobID, r.Attempt),
		}, console); err != nil {
			return false, fmt.Errorf("store console log: %w", err)
		}
		r.ConsoleLog = ConsoleRef(object)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("encode result: %w", err)
	}
	msgID := "result-" + r.JobID
	if o.replaces > 0 {
		msgID = fmt.Sprintf("result-%s-after-%d", r.JobID, o.replaces)
	}
	ack, err := q.js.Publish(ctx, ResultSubject(r.JobID), data,
		jetstream.WithMsgID(msgID),
		jetstream.WithExpectStream(StreamResults),
		jetstream.WithExpectLastSequencePerSubject(o.replaces))
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence,
		err == nil && ack.Duplicate:
		// Another delivery of this job reported first; keep its result, console
		// and status.
		if object != "" {
			_ = q.consoles.Delete(ctx, object)
		}
		if winner, _, ok, err := q.result(ctx, r.JobID); err == nil && ok {
			return false, q.reported(ctx, winner)
		}
		return false, nil
	case err != nil:
		return false, fmt.Errorf("publish result: %w", err)
	}
	return true, q.reported(ctx, r)
}

// Result returns the final result of a job and whether there is one.
func (q *Queue) Result(ctx context.Context, jobID string) (jobs.Result, bool, error) {
	r, _, ok, err := q.result(ctx, jobID)
	return r, ok, err
}

// ResultSeq is Result with the result's results-stream sequence (what a rerun
// replaces).
func (q *Queue) ResultSeq(ctx context.Context, jobID string) (jobs.Result, uint64, bool, error) {
	return q.result(ctx, jobID)
}

func (q *Queue) result(ctx context.Context, jobID string) (jobs.Result, uint64, bool, error) {
	if !jobs.ValidJobID(jobID) {
		return jobs.Result{}, 0, false, fmt.Errorf("invalid job id %q", jobID)
	}
	msg, err := q.results.GetLastMsgForSubject(ctx, ResultSubject(jobID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return jobs.Result{}, 0, false, nil
	}
	if err != nil {
		return jobs.Result{}, 0, false, fmt.Errorf("read result of %s: %w", jobID, err)
	}
	r, err := jobs.DecodeResult(msg.Data)
	if err != nil {
		return jobs.Result{}, 0, false, fmt.Errorf("result of %s: %w", jobID, err)
	}
	return r, msg.Sequence, true, nil
}

// Console copies the full console log of a job's result from BucketConsoles to w.
func (q *Queue) Console(ctx context.Context, jobID string, w io.Writer) error {
	r, ok, err := q.Result(ctx, jobID)
	if err != nil {
		return err
	}
	object, found := strings.CutPrefix(r.ConsoleLog, ConsoleRef(""))
	if !ok || !found {
		return fmt.Errorf("console log of %s: %w", jobID, jetstream.ErrObjectNotFound)
	}
	obj, err := q.consoles.Get(ctx, object)
	if err != nil {
		return fmt.Errorf("console log of %s: %w", jobID, err)
	}
	defer obj.Close()
	if _, err := io.Copy(w, obj); err != nil {
		return fmt.Errorf("console log of %s: %w", jobID, err)
	}
	return nil
}

// PublishProgress sends a live progress event to whoever is waiting on the job. It is
// fire-and-forget (core NATS): progress is informative, never needed for correctness.
func (q *Queue) PublishProgress(p jobs.Progress) error {
	if !jobs.ValidJobID(p.JobID) {
		return fmt.Errorf("progress: invalid job id %q", p.JobID)
	}
	if p.Time.IsZero() {
		p.Time = time.Now().UTC()
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode progress: %w", err)
	}
	if err := q.nc.Publish(ProgressSubject(p.JobID), data); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("publish progress: %w", err)
	}
	return nil
}

// TailString returns at most max bytes from the end of s, starting at a line boundary
// when one is near, so a capped console tail still reads cleanly.
func TailString(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[len(s)-max:]
	for i := 0; i < len(s) && i < 256; i++ {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	// No line boundary near: at least do not start inside a UTF-8 sequence.
	for i := 0; i < len(s) && i < utf8.UTFMax; i++ {
		if utf8.RuneStart(s[i]) {
			return s[i:]
		}
	}
	return s
}
