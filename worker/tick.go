package worker

import (
	"context"
	"time"
)

// everyTick calls check every interval until ctx ends or check says it is done:
// the loop of the watches that read a running job's machine and console.
func everyTick(ctx context.Context, interval time.Duration, check func() (done bool)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if check() {
			return
		}
	}
}
