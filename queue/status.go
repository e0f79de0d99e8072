package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
)

// EnsureStatus brings the status entry for r's image up to date with r unless a newer
// result is already there, and records r among its family's verdicts
// (BucketVetted) unless they hold it. Workers call it when they find a job already
// reported.
func (q *Queue) EnsureStatus(ctx context.Context, r jobs.Result) error { return q.reported(ctx, r) }

// updateStatus writes r as the latest result of its image unless the entry already
// holds a result that finished later; compare-and-set keeps concurrent workers honest.
func (q *Queue) updateStatus(ctx context.Context, r jobs.Result) error {
	key := StatusKey(statusName(r))
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	for range 5 {
		var rev uint64
		entry, err := q.status.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("read status %s: %w", key, err)
		default:
			var cur jobs.Result
			if json.Unmarshal(entry.Value(), &cur) == nil &&
				(cur.FinishedAt.After(r.FinishedAt) || (cur.JobID == r.JobID && cur.FinishedAt.Equal(r.FinishedAt))) {
				return nil
			}
			rev = entry.Revision()
		}
		won, err := CompareAndSet(ctx, q.status, key, data, rev)
		if err != nil {
			return fmt.Errorf("write status %s: %w", key, err)
		}
		if won {
			return nil
		}
		// Lost a race with another writer: read again and decide again.
	}
	return fmt.Errorf("write status %s: too much contention", key)
}

func statusName(r jobs.Result) string {
	if r.Publish.Name != "" {
		return r.Publish.Name
	}
	return r.JobID
}

// Status returns the latest result for an image name (publish.name, or the job id
// when the job named no image), and whether there is one.
func (q *Queue) Status(ctx context.Context, name string) (jobs.Result, bool, error) {
	return record(ctx, q.status, StatusKey(name), "status of", jobs.DecodeResult)
}

// Statuses returns the latest result of every image in BucketStatus.
func (q *Queue) Statuses(ctx context.Context) ([]jobs.Result, error) {
	return records(ctx, q, q.status, "status", jobs.DecodeResult)
}
