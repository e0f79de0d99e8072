package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/jobs"
)

// inspectMemoryMiB is the inspection appliance's memory: enough for
// libguestfs's inspection and a package database, small beside a guest.
const inspectMemoryMiB = 768

// Inspector looks inside an image file offline (inspect.Inspect); it always
// returns an Inspection, with Error set when it could not finish.
type Inspector func(ctx context.Context, file, format string, cfg inspect.Config) *jobs.Inspection

// inspection is the offline look inside the job's base image, running beside
// the boot from when the boot starts until joinInspection.
type inspection struct {
	ctx     context.Context // bounded by the inspect timeout
	timeout time.Duration   // that bound, scaled
	cancel  context.CancelFunc
	done    chan struct{}
	ins     *jobs.Inspection // set when done is closed
}

// inspects reports whether the job has the inspection: the worker runs it and
// the job skips not every check it feeds (identity and hygiene).
func (j *jobRun) inspects() bool {
	if j.inspect == nil {
		return false
	}
	for _, c := range []string{jobs.CheckIdentity, jobs.CheckHygiene} {
		if slices.Contains(jobs.AllChecks, c) && !j.job.Checks.IsSkipped(c) {
			return true
		}
	}
	return false
}

// startInspection starts the inspection of the read-only base (never the
// overlay the guest writes), bounded by the worker's inspect timeout (scaled
// under TCG) and by ctx; nil when the job has none.
func (j *jobRun) startInspection(ctx context.Context, base *image.Image, scale func(jobs.Duration) time.Duration) *inspection {
	if !j.inspects() {
		return nil
	}
	timeout := scale(jobs.Duration(j.cfg.InspectTimeout))
	ictx, cancel := context.WithTimeout(ctx, timeout)
	in := &inspection{ctx: ictx, timeout: timeout, cancel: cancel, done: make(chan struct{})}
	cfg := inspect.Config{TCG: j.accel == "tcg", MemoryMiB: inspectMemoryMiB, Nice: true, Log: j.log}
	done := j.rec.checkStage("inspect")
	go func() {
		defer close(in.done)
		in.ins = j.inspect(ictx, base.Path, base.Format, cfg)
		done(nil)
	}()
	return in
}

// joinInspection waits for the inspection, at once cancelled when the verdict
// is already not a pass (it could only be recorded, never change that), and
// records it with the identity check; the job's empty publish properties are
// filled from the facts.
func (j *jobRun) joinInspection(in *inspection) {
	if in == nil {
		j.checkHygiene(nil, false)
		if !j.job.Checks.IsSkipped(jobs.CheckIdentity) {
			j.rec.check(jobs.CheckResult{Name: jobs.CheckIdentity, Status: jobs.StatusSkip,
				Reason: "the inspection is off on this worker (--inspect=false)"})
		}
		return
	}
	// Whether the job had failed before the inspection was joined: then a
	// check it could not feed was cut short by that, not by the worker.
	failed := j.rec.failed()
	select {
	case <-in.done:
	default:
		if failed {
			in.cancel()
		}
		<-in.done
	}
	if errors.Is(in.ctx.Err(), context.DeadlineExceeded) && in.ins.Unfinished() {
		in.ins.Error = fmt.Sprintf("did not finish within %s (--inspect-timeout, scaled under TCG): %s", in.timeout, in.ins.Error)
	}
	in.cancel()
	ins := in.ins
	j.rec.inspection(ins)
	// The hygiene check, after identity, sets the recorded inspection's findings.
	defer j.checkHygiene(ins, failed)
	if j.job.Checks.IsSkipped(jobs.CheckIdentity) {
		return
	}
	res := inspect.Identity(ins, j.job.Publish)
	res.Duration = ins.Took
	notJudged(&res, ins, failed)
	j.rec.check(res)
	if res.Status != jobs.StatusFail {
		if pub, filled := inspect.Fill(j.job.Publish, ins); len(filled) > 0 {
			j.rec.publication(pub)
			j.rec.info(jobs.CheckIdentity, "publish.properties filled from the inspection: "+strings.Join(filled, ", "))
		}
	}
}

// notJudged explains a check the inspection could not feed: skipped, when the
// job had already failed (nothing could change that); in error, when the
// inspection could not finish for a reason of the worker's (out of time, an
// appliance that did not start), so the image is not passed unjudged and the
// job is retried. What the image itself hid (no OS, an unreadable file system)
// stays the check's own skip.
func notJudged(c *jobs.CheckResult, ins *jobs.Inspection, jobFailed bool) {
	if c.Status != jobs.StatusSkip || ins == nil || ins.Error == "" {
		return
	}
	switch {
	case jobFailed:
		c.Reason = "not judged: the job failed before the inspection ended"
	case ins.Unfinished():
		c.Status = jobs.StatusError
		c.Reason = "not judged: the inspection could not finish on this worker: " + ins.Error
	}
}
