package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/imagevet/imagevet/jobs"
)

// TestResultTableListsFindings: imagevet status (and run) list every hygiene
// finding with its level, rule and file under the checks.
func TestResultTableListsFindings(t *testing.T) {
	r := jobs.Result{JobID: "dirty", Verdict: jobs.VerdictFail, FailedCheck: jobs.CheckHygiene, Reason: "machine-id: /etc/machine-id",
		Checks: []jobs.CheckResult{{Name: jobs.CheckHygiene, Status: jobs.StatusFail}},
		Inspection: &jobs.Inspection{Findings: []jobs.Finding{
			{Rule: jobs.RuleMachineID, Level: jobs.LevelFail, Path: "/etc/machine-id", Detail: "machine id 3f6c"},
			{Rule: jobs.RuleShellHistory, Level: jobs.LevelWarn, Path: "/root/.bash_history", Detail: "a history"},
		}}}
	var b bytes.Buffer
	printResultTable(&b, r)
	out := b.String()
	i := strings.Index(out, "hygiene findings:")
	if i < 0 || i < strings.Index(out, "CHECK") {
		t.Fatalf("no findings after the checks:\n%s", out)
	}
	for _, want := range []string{"fail   machine-id     /etc/machine-id      machine id 3f6c", "warn   shell-history  /root/.bash_history  a history"} {
		if !strings.Contains(out[i:], want) {
			t.Errorf("findings lack %q:\n%s", want, out[i:])
		}
	}
	b.Reset()
	printResultTable(&b, jobs.Result{JobID: "clean", Verdict: jobs.VerdictPass, Inspection: &jobs.Inspection{}})
	if strings.Contains(b.String(), "findings") {
		t.Errorf("a clean result lists findings:\n%s", b.String())
	}
}
