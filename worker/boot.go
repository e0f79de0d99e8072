package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/jobs"
)

// judgeBoot is the boot verdict, the lifecycle's step between waiting for SSH and
// the ssh check: it records the boot check from what the wait found and returns
// whether the guest booted. A fatal console line, the console watch's boot verdict
// (a guest that never wrote a byte, a disk without boot code), a guest that
// stopped, or a shutdown fail or end boot; the job's total timeout running out
// while SSH is awaited does not (it fails ssh, the stage that ran out).
func (j *jobRun) judgeBoot(guestCtx context.Context, wait sshWait) bool {
	if m, ok := j.con.Fatal(); ok && m.Check == console.FatalStarvedTimer {
		return j.starved(&HostStarvedError{What: fmt.Sprintf("the guest's kernel found no working timer at %s (%q)", secs(m.Elapsed), m.Line)})
	}
	if m, ok := j.con.Fatal(); ok {
		j.rec.check(jobs.CheckResult{Name: jobs.CheckBoot, Status: jobs.StatusFail, Reason: j.withProvisioningHint(m.String()), Detail: bootDetail(j.con)})
		return false
	}
	if wait.decided && wait.early.Name == jobs.CheckBoot {
		j.rec.check(jobs.CheckResult{Name: jobs.CheckBoot, Status: jobs.StatusFail, Reason: wait.early.Reason, Detail: bootDetail(j.con)})
		return false
	}
	if _, total := jobTimedOut(guestCtx); guestCtx.Err() != nil && !total {
		// Shutdown: the guest was not judged.
		cause := context.Cause(guestCtx)
		j.rec.check(jobs.CheckResult{Name: jobs.CheckBoot, Status: jobs.StatusError, Reason: describe(cause)})
		j.rec.stop(jobs.CheckBoot, cause)
		return false
	}
	if wait.err != nil {
		// A guest that powered off or crashed its emulator never comes back.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(guestCtx), 10*time.Second)
		running, err := j.machine.Running(ctx)
		cancel()
		if err == nil && !running {
			cause := j.stoppedCause(j.machine)
			var fault *ImageFault
			if errors.As(cause, &fault) {
				j.rec.check(jobs.CheckResult{Name: jobs.CheckBoot, Status: jobs.StatusFail, Reason: fault.Reason})
				return false
			}
			j.rec.check(jobs.CheckResult{Name: jobs.CheckBoot, Status: jobs.StatusError, Reason: describe(cause)})
			j.rec.stop(jobs.CheckBoot, cause)
			return false
		}
	}
	if wait.err != nil && !wait.decided {
		if _, total := jobTimedOut(guestCtx); !total {
			// A provisioning stage that stalled, or the console showing the other
			// provisioning than the job's, is the cause whatever the load (login
			// says so).
			_, stalled := stalledStage(j.con, j.now().Sub(j.con.Started()), 0)
			explained := stalled || j.provisioningHint() != ""
			if load, cpus, err := j.load(); err == nil && !explained {
				if starved, ok := starvedAtDeadline(j.con, load, cpus); ok {
					return j.starved(starved)
				}
			}
		}
	}
	reason := "no fatal console output"
	if ms := j.con.Milestones(); len(ms) > 0 {
		reason = fmt.Sprintf("no fatal console output; last milestone: %s at %.1fs", ms[len(ms)-1].Reason, ms[len(ms)-1].Elapsed.Seconds())
	}
	j.rec.check(jobs.CheckResult{Name: jobs.CheckBoot, Status: jobs.StatusPass, Reason: reason, Detail: bootDetail(j.con)})
	return true
}

// starved records a boot the host starved of CPU: an error, retried, that names
// the host's load (read here when the cause has none yet).
func (j *jobRun) starved(e *HostStarvedError) bool {
	if e.CPUs == 0 {
		if load, cpus, err := j.load(); err == nil {
			e.Load, e.CPUs = load, cpus
		}
	}
	j.rec.check(jobs.CheckResult{Name: jobs.CheckBoot, Status: jobs.StatusError, Reason: describe(e), Detail: bootDetail(j.con)})
	j.rec.stop(jobs.CheckBoot, e)
	return false
}
