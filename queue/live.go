package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
)

// What a running job's page replays: the job's progress events since its attempt
// began, and its console so far.
//
// Progress goes out on core NATS (PublishProgress) so followers see it at once;
// StreamProgress also stores it, a day long, so a page opened mid-job reads the
// story so far (ProgressOf) before it follows the rest live. The console of a
// running attempt is one entry per job in BucketLiveConsoles, replaced as it grows
// (a page needs only the latest), never a stream of chunks.
const (
	// StreamProgress stores every job's progress events (subjects ProgressSubject).
	StreamProgress = "IMAGEVET_PROGRESS"
	// SubjectProgress matches every job's progress subject.
	SubjectProgress = "imagevet.progress.>"
	// BucketLiveConsoles holds the console so far of each running job (key: job id).
	BucketLiveConsoles = "imagevet_live_consoles"
	// ProgressMaxAge is how long progress events and live consoles are kept: they
	// matter while a job runs, results keep what matters after.
	ProgressMaxAge = 24 * time.Hour
	// maxProgressPerJob bounds the events stored per job id (the oldest go).
	maxProgressPerJob = 5000
)

func progressStreamConfig(cfg Config) jetstream.StreamConfig {
	s := streamConfig(cfg.Replicas, StreamProgress, "imagevet: progress events of running jobs, for pages opened mid-job", SubjectProgress)
	s.MaxAge = ProgressMaxAge
	s.MaxMsgsPerSubject = maxProgressPerJob
	s.MaxMsgSize = 64 << 10
	s.Discard = jetstream.DiscardOld
	return s
}

func liveConsolesBucketConfig(cfg Config) jetstream.KeyValueConfig {
	b := bucketConfig(cfg.Replicas, BucketLiveConsoles, "imagevet: the console so far of each running job", 1, ProgressMaxAge)
	b.MaxValueSize = 256 << 10
	return b
}

// maxReplayed bounds the events ProgressOf returns.
const maxReplayed = maxProgressPerJob

// ProgressOf returns the stored progress events of a job, oldest first (every
// attempt's: the caller picks the attempt it shows). A queue set up by an older
// imagevet has no StreamProgress: then it returns none.
func (q *Queue) ProgressOf(ctx context.Context, jobID string) ([]jobs.Progress, error) {
	if !jobs.ValidJobID(jobID) {
		return nil, fmt.Errorf("progress of %q: invalid job id", jobID)
	}
	if q.progress == nil {
		return nil, nil
	}
	cons, err := q.progress.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{ProgressSubject(jobID)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("progress of %s: %w", jobID, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("progress of %s: %w", jobID, err)
	}
	pending := min(int(info.NumPending), maxReplayed)
	out := make([]jobs.Progress, 0, pending)
	for len(out) < pending {
		wait := time.Second
		if d, ok := ctx.Deadline(); ok {
			wait = max(time.Until(d), 10*time.Millisecond)
		}
		batch, err := cons.Fetch(min(pending-len(out), 500), jetstream.FetchMaxWait(wait))
		if err != nil {
			return out, fmt.Errorf("progress of %s: %w", jobID, err)
		}
		n, last := 0, uint64(1)
		for m := range batch.Messages() {
			n++
			var p jobs.Progress
			if json.Unmarshal(m.Data(), &p) == nil {
				out = append(out, p)
			}
			if meta, err := m.Metadata(); err == nil {
				last = meta.NumPending
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return out, fmt.Errorf("progress of %s: %w", jobID, err)
		}
		if n == 0 || last == 0 {
			break
		}
	}
	return out, nil
}

// PutLiveConsole records a running attempt's console so far, replacing the one
// before. Without BucketLiveConsoles (a queue set up by an older imagevet) it does
// nothing.
func (q *Queue) PutLiveConsole(ctx context.Context, c jobs.LiveConsole) error {
	if !jobs.ValidJobID(c.JobID) {
		return fmt.Errorf("live console: invalid job id %q", c.JobID)
	}
	if q.live == nil {
		return nil
	}
	return put(ctx, q.live, c.JobID, "live console", c)
}

// LiveConsole reads a job's console so far; ok is false when none was recorded.
func (q *Queue) LiveConsole(ctx context.Context, jobID string) (c jobs.LiveConsole, ok bool, err error) {
	if !jobs.ValidJobID(jobID) {
		return c, false, fmt.Errorf("live console of %q: invalid job id", jobID)
	}
	if q.live == nil {
		return c, false, nil
	}
	entry, err := q.live.Get(ctx, jobID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("live console of %s: %w", jobID, err)
	}
	if err := json.Unmarshal(entry.Value(), &c); err != nil {
		return c, false, fmt.Errorf("live console of %s: %w", jobID, err)
	}
	return c, true, nil
}
