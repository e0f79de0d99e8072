package worker

import (
	"context"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// shareConsole sends the console so far (its last lines and marks) as an
// jobs.EventConsole progress event whenever it grew, at most every
// jobs.LiveConsoleInterval, until ctx ends: what a running job's page shows.
func (j *jobRun) shareConsole(ctx context.Context) {
	tick := time.NewTicker(jobs.LiveConsoleInterval)
	defer tick.Stop()
	sent := int64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := j.con.BytesRead()
		if n == sent {
			continue
		}
		sent = n
		j.rec.console(j.con.Tail(jobs.LiveConsoleLines), consoleMarks(j.con))
	}
}
