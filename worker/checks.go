package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/guest"
)

// guestCheck is one row of the checks run inside the guest once SSH answered. Rows
// are recorded in table order; each starts as soon as the rows it runs after have
// ended (whatever their outcome), so rows with nothing to wait for run beside each
// other.
type guestCheck struct {
	name string
	// applies says whether the job has this check at all.
	applies func(jobs.Job) bool
	// after names the rows this one waits for.
	after []string
	// timeout is the row's own deadline, before TCG scaling.
	timeout func(jobs.Job) jobs.Duration
	// count multiplies the scaled timeout (the commands' share each one).
	count func(jobs.Job) int
	run   func(j *jobRun, ctx context.Context, r guest.Runner, scale func(jobs.Duration) time.Duration) guest.CheckResult
}

// provisioning names the checks of both provisioning kinds: only one applies.
var provisioning = []string{jobs.CheckCloudInit, jobs.CheckIgnition}

// guestChecks is the table. The metadata fetch starts when SSH answers and runs
// beside the provisioning check, which waits for first boot to finish; hostname
// follows provisioning (cloud-init sets it); the job's own commands come last, once
// our checks are done, as they may change the guest (or flood its metadata path,
// as the hostile fixtures do).
var guestChecks = []guestCheck{
	{name: jobs.CheckIgnition, applies: isIgnition, timeout: cloudInitTimeout, run: (*jobRun).checkIgnition},
	{name: jobs.CheckCloudInit, applies: not(isIgnition), timeout: cloudInitTimeout, run: (*jobRun).checkCloudInit},
	{name: jobs.CheckHostname, after: provisioning, timeout: commandTimeout, run: (*jobRun).checkHostname},
	{name: jobs.CheckMetadata, timeout: commandTimeout, run: (*jobRun).checkMetadata},
	{name: jobs.CheckCommands, applies: hasCommands, after: append(provisioning, jobs.CheckHostname, jobs.CheckMetadata),
		timeout: commandTimeout, count: func(j jobs.Job) int { return len(j.Commands) }, run: (*jobRun).checkCommands},
}

func isIgnition(j jobs.Job) bool  { return j.Guest.Provisioning == jobs.ProvisioningIgnition }
func hasCommands(j jobs.Job) bool { return len(j.Commands) > 0 }
func not(f func(jobs.Job) bool) func(jobs.Job) bool {
	return func(j jobs.Job) bool { return !f(j) }
}
func cloudInitTimeout(j jobs.Job) jobs.Duration { return j.Timeouts.CloudInit }
func commandTimeout(j jobs.Job) jobs.Duration   { return j.Timeouts.Command }

// checkOutcome is how one row ended.
type checkOutcome struct {
	res         guest.CheckResult
	skipped     bool // by the job
	interrupted bool // never judged: the guest's context ended first
}

// runGuestChecks runs the table's rows that apply to the job and records each in
// table order.
func (j *jobRun) runGuestChecks(ctx context.Context, r guest.Runner, scale func(jobs.Duration) time.Duration) {
	var rows []guestCheck
	ended := map[string]chan struct{}{}
	for _, row := range guestChecks {
		if row.applies == nil || row.applies(j.job) {
			rows = append(rows, row)
			ended[row.name] = make(chan struct{})
		}
	}
	outcomes := make([]chan checkOutcome, len(rows))
	for i, row := range rows {
		outcomes[i] = make(chan checkOutcome, 1)
		go func() {
			for _, dep := range row.after {
				if ch, ok := ended[dep]; ok {
					<-ch
				}
			}
			outcomes[i] <- j.runGuestCheck(ctx, r, scale, row)
			close(ended[row.name])
		}()
	}
	for i, row := range rows {
		o := <-outcomes[i]
		switch {
		case o.skipped:
			j.rec.check(jobs.CheckResult{Name: row.name, Status: jobs.StatusSkip, Reason: "skipped by the job"})
		case o.interrupted:
			j.interrupted(ctx, row.name)
		default:
			j.rec.check(toJobCheck(row.name, o.res))
			if o.res.Status == guest.StatusError && o.res.Err != nil {
				j.rec.stop(row.name, o.res.Err)
			}
		}
	}
}

// runGuestCheck runs one row under its deadline and the guest's context; its stage
// ends when the check does.
func (j *jobRun) runGuestCheck(ctx context.Context, r guest.Runner, scale func(jobs.Duration) time.Duration, row guestCheck) checkOutcome {
	if j.job.Checks.IsSkipped(row.name) {
		return checkOutcome{skipped: true}
	}
	if ctx.Err() != nil {
		return checkOutcome{interrupted: true}
	}
	timeout := scale(row.timeout(j.job))
	if row.count != nil {
		timeout *= time.Duration(row.count(j.job))
	}
	done := j.rec.checkStage(row.name)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	res := row.run(j, cctx, r, scale)
	cancel()
	if total, ok := jobTimedOut(ctx); ok && res.Status != guest.StatusSkip {
		// The check that ran out of the job's time is judged like one that ran out
		// of its own: a cloud-init overrun fails cloud-init.
		res.Reason = fmt.Sprintf("%s (%s)", res.Reason, total)
		done(total)
		return checkOutcome{res: res}
	}
	if ctx.Err() != nil {
		done(context.Cause(ctx))
		return checkOutcome{interrupted: true}
	}
	done(res.Err)
	return checkOutcome{res: res}
}

func (j *jobRun) checkMetadata(ctx context.Context, r guest.Runner, _ func(jobs.Duration) time.Duration) guest.CheckResult {
	res := guest.CheckMetadata(ctx, r, guest.DefaultMetadataURL, j.instanceID())
	if res.Status == guest.StatusPass && len(j.meta.Requests()) == 0 {
		res.Status, res.Reason = guest.StatusFail, "the guest printed metadata but the metadata server saw no request"
	}
	return res
}

// checkIgnition reads Ignition's result: it ran in the initramfs, before SSH answered.
func (j *jobRun) checkIgnition(ctx context.Context, r guest.Runner, _ func(jobs.Duration) time.Duration) guest.CheckResult {
	want := j.ignition
	_, want.ConsoleComplete = j.con.Milestone(console.MilestoneIgnitionComplete)
	return guest.CheckIgnition(ctx, r, want)
}

func (j *jobRun) checkCloudInit(ctx context.Context, r guest.Runner, _ func(jobs.Duration) time.Duration) guest.CheckResult {
	job := j.job
	res := guest.CheckCloudInit(ctx, r, guest.CloudInitWant{InstanceID: j.instanceID(), Hostname: job.Guest.Hostname, Datasource: job.Guest.Datasource})
	if res.Status == guest.StatusSkip && job.Checks.ExplicitlyRequired(jobs.CheckCloudInit) {
		res.Status = guest.StatusFail
	}
	if hint := j.provisioningHint(); res.Status == guest.StatusSkip && hint != "" {
		res.Status, res.Reason = guest.StatusFail, res.Reason+": "+hint
	}
	return res
}

func (j *jobRun) checkHostname(ctx context.Context, r guest.Runner, _ func(jobs.Duration) time.Duration) guest.CheckResult {
	return guest.CheckHostname(ctx, r, j.job.Guest.Hostname)
}

func (j *jobRun) checkCommands(ctx context.Context, r guest.Runner, scale func(jobs.Duration) time.Duration) guest.CheckResult {
	cmds := make([]guest.Command, len(j.job.Commands))
	for i, c := range j.job.Commands {
		cmds[i] = guest.Command{Run: c.Run, ExpectExit: c.ExitWanted(), ExpectOutput: c.ExpectOutput, Timeout: scale(j.job.Timeouts.Command)}
	}
	return guest.RunCommands(ctx, r, cmds)
}

// toJobCheck converts a guest check's outcome into the result's form.
func toJobCheck(name string, c guest.CheckResult) jobs.CheckResult {
	return jobs.CheckResult{Name: name, Status: jobs.CheckStatus(c.Status), Reason: c.Reason, Detail: c.Detail, Duration: jobs.Duration(c.Duration)}
}
