package web

import (
	"strings"
	"testing"

	"github.com/imagevet/imagevet/jobs"
)

// TestJobPageListsHygieneFindings: the job page has a row per hygiene finding,
// with its level, rule, file and detail (escaped), and no table without findings.
func TestJobPageListsHygieneFindings(t *testing.T) {
	url := serveRecordedPanic(t, func(r *jobs.Result) {
		r.JobID = "dirty"
		r.Inspection = &jobs.Inspection{Findings: []jobs.Finding{
			{Rule: jobs.RuleMachineID, Level: jobs.LevelFail, Path: "/etc/machine-id", Detail: "machine id 3f6c: every server has it"},
			{Rule: jobs.RuleShellHistory, Level: jobs.LevelWarn, Path: "/root/.bash_history", Detail: "a history <from> the build"},
		}}
	})
	body := jobPage(t, url, "dirty")
	for _, want := range []string{
		"<h2>Hygiene findings</h2>",
		`<tr class="fail"><td><span class="v fail">fail</span></td><td>machine-id</td><td><code>/etc/machine-id</code></td><td>machine id 3f6c: every server has it</td></tr>`,
		`<tr class="warn"><td><span class="v error">warn</span></td><td>shell-history</td><td><code>/root/.bash_history</code></td><td>a history &lt;from&gt; the build</td></tr>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("job page lacks %s", want)
		}
	}
	if code, body := get(t, url+"/jobs/tiny-panic"); code != 200 || strings.Contains(body, "Hygiene findings") {
		t.Error("a job without findings shows a findings table")
	}
}
