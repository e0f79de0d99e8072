package queue

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
)

// FollowResults calls fn with every result in StreamResults, oldest first, then with
// each new one as it is published, until stop is called. caughtUp (which may be nil)
// is called once, when fn has seen every result that existed when FollowResults
// was called (at once for an empty stream). Results that do not decode go to bad
// (which may be nil) and are skipped. fn runs on one goroutine at a time. Readers
// that keep their own view of the results (the web page) use it.
func (q *Queue) FollowResults(ctx context.Context, fn func(jobs.Result), caughtUp func(), bad func(error)) (stop func(), err error) {
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
		r, err := jobs.DecodeResult(msg.Data())
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
