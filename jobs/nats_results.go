package jobs

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
// always agrees. published reports whether r won. A worker that dies between the
// result and the status leaves the status to the next delivery, which finds the
// result and calls EnsureStatus. The console tail is capped at MaxConsoleTail.
func (q *Queue) PublishResult(ctx context.Context, r Result, console io.Reader, opts ...PublishOption) (published bool, err error) {
	var o publishOpts
	for _, opt := range opts {
		opt(&o)
	}
	if !ValidJobID(r.JobID) {
		return false, fmt.Errorf("publish result: invalid job id %q", r.JobID)
	}
	if r.Version == 0 {
		r.Version = Version
	}
	r.ConsoleTail = TailString(r.ConsoleTail, MaxConsoleTail)
	if existing, seq, ok, err := q.result(ctx, r.JobID); err != nil {
		return false, err
	} else if ok && seq != o.replaces {
		return false, q.updateStatus(ctx, existing)
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
			return false, q.updateStatus(ctx, winner)
		}
		return false, nil
	case err != nil:
		return false, fmt.Errorf("publish result: %w", err)
	}
	return true, q.updateStatus(ctx, r)
}

// EnsureStatus brings the status entry for r's image up to date with r unless a newer
// result is already there. Workers call it when they find a job already reported.
func (q *Queue) EnsureStatus(ctx context.Context, r Result) error { return q.updateStatus(ctx, r) }

// updateStatus writes r as the latest result of its image unless the entry already
// holds a result that finished later; compare-and-set keeps concurrent workers honest.
func (q *Queue) updateStatus(ctx context.Context, r Result) error {
	key := StatusKey(statusName(r))
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	for range 5 {
		entry, err := q.status.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = q.status.Create(ctx, key, data)
		case err != nil:
			return fmt.Errorf("read status %s: %w", key, err)
		default:
			var cur Result
			if json.Unmarshal(entry.Value(), &cur) == nil &&
				(cur.FinishedAt.After(r.FinishedAt) || (cur.JobID == r.JobID && cur.FinishedAt.Equal(r.FinishedAt))) {
				return nil
			}
			_, err = q.status.Update(ctx, key, data, entry.Revision())
		}
		if err == nil {
			return nil
		}
		if !isCASConflict(err) {
			return fmt.Errorf("write status %s: %w", key, err)
		}
		// Lost a race with another writer: read again and decide again.
	}
	return fmt.Errorf("write status %s: too much contention", key)
}

func statusName(r Result) string {
	if r.Publish.Name != "" {
		return r.Publish.Name
	}
	return r.JobID
}

// Result returns the final result of a job and whether there is one.
func (q *Queue) Result(ctx context.Context, jobID string) (Result, bool, error) {
	r, _, ok, err := q.result(ctx, jobID)
	return r, ok, err
}

// ResultSeq is Result with the result's results-stream sequence (what a rerun
// replaces).
func (q *Queue) ResultSeq(ctx context.Context, jobID string) (Result, uint64, bool, error) {
	return q.result(ctx, jobID)
}

func (q *Queue) result(ctx context.Context, jobID string) (Result, uint64, bool, error) {
	if !ValidJobID(jobID) {
		return Result{}, 0, false, fmt.Errorf("invalid job id %q", jobID)
	}
	msg, err := q.results.GetLastMsgForSubject(ctx, ResultSubject(jobID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Result{}, 0, false, nil
	}
	if err != nil {
		return Result{}, 0, false, fmt.Errorf("read result of %s: %w", jobID, err)
	}
	r, err := DecodeResult(msg.Data)
	if err != nil {
		return Result{}, 0, false, fmt.Errorf("result of %s: %w", jobID, err)
	}
	return r, msg.Sequence, true, nil
}

// Status returns the latest result for an image name (publish.name, or the job id
// when the job named no image), and whether there is one.
func (q *Queue) Status(ctx context.Context, name string) (Result, bool, error) {
	entry, err := q.status.Get(ctx, StatusKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, fmt.Errorf("read status of %s: %w", name, err)
	}
	r, err := DecodeResult(entry.Value())
	if err != nil {
		return Result{}, false, fmt.Errorf("status of %s: %w", name, err)
	}
	return r, true, nil
}

// Statuses returns the latest result of every image in BucketStatus.
func (q *Queue) Statuses(ctx context.Context) ([]Result, error) {
	lister, err := q.status.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list status: %w", err)
	}
	defer lister.Stop()
	var out []Result
	for key := range lister.Keys() {
		entry, err := q.status.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read status %s: %w", key, err)
		}
		r, err := DecodeResult(entry.Value())
		if err != nil {
			return nil, fmt.Errorf("status %s: %w", key, err)
		}
		out = append(out, r)
	}
	return out, nil
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
func (q *Queue) PublishProgress(p Progress) error {
	if !ValidJobID(p.JobID) {
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
