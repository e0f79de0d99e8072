// Package retry is imagevet's one way of trying an operation again: a jittered
// exponential backoff whose waits end with the caller's context.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy says how often and how long apart an operation is tried.
type Policy struct {
	// Initial is the wait before the first retry; each further wait doubles, up to Max.
	Initial time.Duration
	// Max caps a single wait (Initial when zero or smaller).
	Max time.Duration
	// Jitter spreads each wait by up to ±Jitter of it (0.25: ±25 %), so workers
	// that failed together do not retry together. 0 waits exactly.
	Jitter float64
	// Attempts bounds the tries, the first included; 0 tries until the context ends.
	Attempts int
}

// Delay is the wait before retry n (1-based: the wait after the first try is
// Delay(1)).
func (p Policy) Delay(n int) time.Duration {
	if n < 1 || p.Initial <= 0 {
		return 0
	}
	d := p.Initial << min(n-1, 30)
	if d <= 0 || d > max(p.Max, p.Initial) {
		d = max(p.Max, p.Initial)
	}
	if p.Jitter > 0 {
		spread := time.Duration(float64(d) * min(p.Jitter, 1))
		d += time.Duration(rand.Int64N(int64(2*spread)+1)) - spread
	}
	return d
}

// Wait sleeps for d, or until ctx ends, when it returns the context's cause.
func Wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return context.Cause(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Do calls op (attempt 1, 2, …) until it returns nil. After a failure, again
// decides whether to try once more (it may log; nil again retries every error);
// Do then waits Delay(attempt) and tries again. Do returns op's last error when
// again says no, the attempts are used up or ctx ends first: the operation's own
// error, never a bare context error hiding it.
func (p Policy) Do(ctx context.Context, op func(attempt int) error, again func(attempt int, err error) bool) error {
	for attempt := 1; ; attempt++ {
		err := op(attempt)
		if err == nil {
			return nil
		}
		if p.Attempts > 0 && attempt >= p.Attempts {
			return err
		}
		if again != nil && !again(attempt, err) {
			return err
		}
		if Wait(ctx, p.Delay(attempt)) != nil {
			return err
		}
	}
}
