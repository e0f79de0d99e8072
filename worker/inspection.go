package worker

import (
	"context"
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
	cancel context.CancelFunc
	done   chan struct{}
	ins    *jobs.Inspection // set when done is closed
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
	ictx, cancel := context.WithTimeout(ctx, scale(jobs.Duration(j.cfg.InspectTimeout)))
	in := &inspection{cancel: cancel, done: make(chan struct{})}
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
		j.checkHygiene(nil)
		if !j.job.Checks.IsSkipped(jobs.CheckIdentity) {
			j.rec.check(jobs.CheckResult{Name: jobs.CheckIdentity, Status: jobs.StatusSkip,
				Reason: "the inspection is off on this worker (--inspect=false)"})
		}
		return
	}
	select {
	case <-in.done:
	default:
		if j.rec.failed() {
			in.cancel()
		}
		<-in.done
	}
	in.cancel()
	ins := in.ins
	j.rec.inspection(ins)
	// The hygiene check, after identity, sets the recorded inspection's findings.
	defer j.checkHygiene(ins)
	if j.job.Checks.IsSkipped(jobs.CheckIdentity) {
		return
	}
	res := inspect.Identity(ins, j.job.Publish)
	res.Duration = ins.Took
	if res.Status == jobs.StatusSkip && ins.Error != "" && j.rec.failed() {
		res.Reason = "not judged: the job failed before the inspection ended"
	}
	j.rec.check(res)
	if res.Status != jobs.StatusFail {
		if pub, filled := inspect.Fill(j.job.Publish, ins); len(filled) > 0 {
			j.rec.publication(pub)
			j.rec.info(jobs.CheckIdentity, "publish.properties filled from the inspection: "+strings.Join(filled, ", "))
		}
	}
}
