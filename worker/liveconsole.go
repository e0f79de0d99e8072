package worker

import (
	"context"

	"github.com/imagevet/imagevet/jobs"
)

// shareConsole sends the console so far (its last lines and marks) as an
// jobs.EventConsole progress event whenever it grew, at most every
// jobs.LiveConsoleInterval, until ctx ends: what a running job's page shows.
func (j *jobRun) shareConsole(ctx context.Context) {
	sent := int64(0)
	everyTick(ctx, jobs.LiveConsoleInterval, func() bool {
		if n := j.con.BytesRead(); n != sent {
			sent = n
			j.rec.console(j.con.Tail(jobs.LiveConsoleLines), consoleMarks(j.con))
		}
		return false
	})
}
