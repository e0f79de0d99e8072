package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/jobs"
)

// previousReleases finds what a release is compared with (queue.Queue): the
// family's last passed result of another release, else its last failure; ok is
// false when the family has none.
type previousReleases interface {
	PreviousRelease(ctx context.Context, family, release, jobID string) (prev jobs.Result, ok bool, err error)
}

// compareTimeout bounds the look-up of the previous release: the verdict waits
// for it, so it is short, and a look-up that fails only leaves the changes out.
const compareTimeout = 10 * time.Second

// compare attaches to a verdict (pass or fail) of a job in a family how it differs
// from the family's previous vetted release (inspect.Attach: changes on the
// inspection, regressions as warnings). Without a family, a previous release or a
// readable queue the result goes out without them.
func compare(stop context.Context, prevs previousReleases, res *jobs.Result, job jobs.Job, log *slog.Logger) {
	if job.Publish.Family == "" || (res.Verdict != jobs.VerdictPass && res.Verdict != jobs.VerdictFail) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(stop), compareTimeout)
	defer cancel()
	prev, ok, err := prevs.PreviousRelease(ctx, job.Publish.Family, job.Publish.Release, job.ID)
	switch {
	case err != nil:
		log.Warn("previous release not read, reporting without changes", "family", job.Publish.Family, "err", err)
		return
	case !ok:
		log.Debug("first vetted release of the family", "family", job.Publish.Family)
		return
	}
	inspect.Attach(res, prev, job.Regression)
	log.Info("compared with the previous release", "previous_job", prev.JobID, "previous_release", prev.Publish.Release,
		"regressions", len(res.Inspection.Changes.Regressions))
}
