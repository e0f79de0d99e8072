package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishResult reports a job's final result: the full console log (when console is
// not nil) into BucketConsoles, the latest verdict for the image in BucketStatus, then
// the result on its results subject. Status goes first so that whoever saw the result
// (a CI job waiting on it) finds the status already updated. Only the first result for
// a job id is kept; publishing another returns published=false and leaves the first in
// place (its status entry is still brought up to date). The console tail is capped at
// MaxConsoleTail.
func (q *Queue) PublishResult(ctx context.Context, r Result, console io.Reader) (published bool, err error) {
	if !ValidJobID(r.JobID) {
		return false, fmt.Errorf("publish result: invalid job id %q", r.JobID)
	}
	if r.Version == 0 {
		r.Version = Version
	}
	r.ConsoleTail = TailString(r.ConsoleTail, MaxConsoleTail)
	if existing, ok, err := q.Result(ctx, r.JobID); err != nil {
		return false, err
	} else if ok {
		return false, q.updateStatus(ctx, existing)
	}
	if console != nil {
		if _, err := q.consoles.Put(ctx, jetstream.ObjectMeta{
			Name:        r.JobID,
			Description: "serial console of job " + r.JobID,
		}, console); err != nil {
			return false, fmt.Errorf("store console log: %w", err)
		}
		r.ConsoleLog = ConsoleRef(r.JobID)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("encode result: %w", err)
	}
	if err := q.updateStatus(ctx, r); err != nil {
		return false, err
	}
	ack, err := q.js.Publish(ctx, ResultSubject(r.JobID), data,
		jetstream.WithMsgID("result-"+r.JobID),
		jetstream.WithExpectStream(StreamResults),
		jetstream.WithExpectLastSequencePerSubject(0))
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence,
		err == nil && ack.Duplicate:
		// Another delivery of this job reported first; keep its result.
		return false, nil
	case err != nil:
		return false, fmt.Errorf("publish result: %w", err)
	}
	return true, nil
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
				(cur.JobID == r.JobID || cur.FinishedAt.After(r.FinishedAt)) {
				return nil
			}
			_, err = q.status.Update(ctx, key, data, entry.Revision())
		}
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if !errors.Is(err, jetstream.ErrKeyExists) && !(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
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
	if !ValidJobID(jobID) {
		return Result{}, false, fmt.Errorf("invalid job id %q", jobID)
	}
	msg, err := q.results.GetLastMsgForSubject(ctx, ResultSubject(jobID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, fmt.Errorf("read result of %s: %w", jobID, err)
	}
	r, err := DecodeResult(msg.Data)
	if err != nil {
		return Result{}, false, fmt.Errorf("result of %s: %w", jobID, err)
	}
	return r, true, nil
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

// Console copies a job's full console log from BucketConsoles to w.
func (q *Queue) Console(ctx context.Context, jobID string, w io.Writer) error {
	obj, err := q.consoles.Get(ctx, jobID)
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
