package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// FollowResults calls fn with every result in StreamResults, oldest first, then with
// each new one as it is published, until stop is called. caughtUp (which may be nil)
// is called once, when fn has seen every result that existed when FollowResults
// was called (at once for an empty stream). Results that do not decode go to bad
// (which may be nil) and are skipped. fn runs on one goroutine at a time. Readers
// that keep their own view of the results (the web page) use it.
func (q *Queue) FollowResults(ctx context.Context, fn func(Result), caughtUp func(), bad func(error)) (stop func(), err error) {
	c, err := q.js.OrderedConsumer(ctx, StreamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{SubjectResults},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("follow results: %w", err)
	}
	var once sync.Once
	up := func() {
		if caughtUp != nil {
			once.Do(caughtUp)
		}
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("follow results: %w", err)
	}
	if info.NumPending == 0 {
		up()
	}
	cc, err := c.Consume(func(msg jetstream.Msg) {
		r, err := DecodeResult(msg.Data())
		if err != nil {
			if bad != nil {
				bad(fmt.Errorf("result on %s: %w", msg.Subject(), err))
			}
		} else {
			fn(r)
		}
		if md, err := msg.Metadata(); err == nil && md.NumPending == 0 {
			up()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("follow results: %w", err)
	}
	return cc.Stop, nil
}

// QueuedJob is a job still in StreamJobs: queued, or delivered to a worker and not
// yet acknowledged.
type QueuedJob struct {
	Job      Job
	Sequence uint64
	// Submitted is when the job entered the stream.
	Submitted time.Time
}

// QueuedJobs lists up to max jobs still in StreamJobs, oldest first, and whether
// there were more. Entries that do not decode are skipped (the worker reports them
// as bad jobs).
func (q *Queue) QueuedJobs(ctx context.Context, max int) (list []QueuedJob, more bool, err error) {
	stream, err := q.js.Stream(ctx, StreamJobs)
	if err != nil {
		return nil, false, fmt.Errorf("jobs stream: %w", err)
	}
	for seq := uint64(1); ; seq++ {
		msg, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(SubjectJobs))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return list, false, nil
		}
		if err != nil {
			return list, false, fmt.Errorf("read jobs stream at %d: %w", seq, err)
		}
		if len(list) == max {
			return list, true, nil
		}
		seq = msg.Sequence
		if job, err := DecodeJob(msg.Data); err == nil {
			list = append(list, QueuedJob{Job: job, Sequence: msg.Sequence, Submitted: msg.Time})
		}
	}
}
