package worker

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/jobs"
)

// checkHygiene records the hygiene check of the job's inspection (nil when the
// worker's inspection is off) once the inspection is joined, after SSH answered
// or failed: its warnings, then the check. jobFailed is whether the job had
// failed before the inspection was joined.
func (j *jobRun) checkHygiene(in *jobs.Inspection, jobFailed bool) {
	if j.job.Checks.IsSkipped(jobs.CheckHygiene) {
		j.rec.check(jobs.CheckResult{Name: jobs.CheckHygiene, Status: jobs.StatusSkip, Reason: "skipped by the job"})
		return
	}
	o := judgeHygiene(j.job, in, j.hostKey)
	notJudged(&o.check, in, jobFailed)
	for _, w := range o.warnings {
		j.rec.warn(jobs.CheckHygiene, w)
	}
	j.rec.check(o.check)
}

// hygieneOutcome is what the hygiene check decided: its result and the warnings
// it adds to the job's.
type hygieneOutcome struct {
	check    jobs.CheckResult
	warnings []string
}

// judgeHygiene decides the hygiene check from the inspection and the host key the
// booted server presented (nil when SSH never answered): the inspection's
// evidence judged at the job's levels; a finding at fail fails it, each one at
// warn is a warning. It sets the inspection's findings. An inspection that could
// not read the image skips the check with its reason.
func judgeHygiene(job jobs.Job, in *jobs.Inspection, presented ssh.PublicKey) hygieneOutcome {
	c := jobs.CheckResult{Name: jobs.CheckHygiene, Required: job.Checks.IsRequired(jobs.CheckHygiene)}
	switch {
	case in == nil:
		c.Status, c.Reason = jobs.StatusSkip, "the inspection is off on this worker (--inspect=false)"
		return hygieneOutcome{check: c}
	case in.Evidence == nil:
		c.Status, c.Reason = jobs.StatusSkip, "the inspection read no evidence"
		if in.Error != "" {
			c.Reason += ": " + in.Error
		}
		return hygieneOutcome{check: c}
	}
	var boot inspect.Boot
	if presented != nil {
		boot.HostKey = ssh.FingerprintSHA256(presented)
	}
	in.Findings = inspect.Hygiene(in.Evidence, boot, job.Checks.Hygiene)
	var fails, detail []string
	var out hygieneOutcome
	for _, f := range in.Findings {
		line := fmt.Sprintf("%s: %s: %s", f.Rule, f.Path, f.Detail)
		detail = append(detail, f.Level+" "+line)
		if f.Level == jobs.LevelFail {
			fails = append(fails, line)
		} else {
			out.warnings = append(out.warnings, "hygiene "+line)
		}
	}
	c.Detail = strings.Join(detail, "\n")
	switch {
	case len(fails) > 0:
		c.Status, c.Reason = jobs.StatusFail, fails[0]
		if len(fails) > 1 {
			c.Reason += fmt.Sprintf(" (and %d more findings at fail)", len(fails)-1)
		}
	case len(out.warnings) > 0:
		c.Status, c.Reason = jobs.StatusPass, fmt.Sprintf("nothing at fail; %d warnings", len(out.warnings))
	default:
		c.Status, c.Reason = jobs.StatusPass, "nothing a tenant would inherit"
	}
	out.check = c
	return out
}
