package worker

import (
	"fmt"
	"strings"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/guest"
	"github.com/imagevet/imagevet/worker/guest/console"
)

// toJobCheck converts a guest check's outcome into the result's form.
func toJobCheck(name string, c guest.CheckResult) jobs.CheckResult {
	return jobs.CheckResult{Name: name, Status: jobs.CheckStatus(c.Status), Reason: c.Reason, Detail: c.Detail, Duration: jobs.Duration(c.Duration)}
}

// bootDetail summarises the console: milestones with their times, then warnings.
func bootDetail(con *console.Console) string {
	var b strings.Builder
	for _, m := range con.Milestones() {
		fmt.Fprintf(&b, "%7.1fs %s\n", m.Elapsed.Seconds(), m.Reason)
	}
	for _, w := range con.Warnings() {
		fmt.Fprintf(&b, "warning: %s\n", w.String())
	}
	return strings.TrimRight(b.String(), "\n")
}
