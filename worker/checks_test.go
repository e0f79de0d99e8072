package worker

import (
	"slices"
	"testing"

	"github.com/imagevet/imagevet/jobs"
)

// The table is a schedule: every row waits only for rows recorded before it, the
// provisioning kinds exclude each other, and the job's commands wait for all of ours.
func TestGuestCheckTableIsASchedule(t *testing.T) {
	seen := map[string]bool{}
	for _, row := range guestChecks {
		for _, dep := range row.after {
			if !seen[dep] {
				t.Errorf("%s runs after %s, which is not an earlier row", row.name, dep)
			}
		}
		if row.timeout == nil || row.run == nil {
			t.Errorf("%s has no timeout or no run", row.name)
		}
		seen[row.name] = true
	}
	for _, kind := range []string{jobs.ProvisioningCloudInit, jobs.ProvisioningIgnition} {
		job := jobs.Job{Guest: jobs.GuestSpec{Provisioning: kind}, Commands: []jobs.Command{{Run: "true"}}}
		var names []string
		for _, row := range guestChecks {
			if row.applies == nil || row.applies(job) {
				names = append(names, row.name)
			}
		}
		if slices.Contains(names, jobs.CheckCloudInit) == slices.Contains(names, jobs.CheckIgnition) {
			t.Errorf("provisioning %q runs %v: want exactly one of cloud-init and ignition", kind, names)
		}
	}
	cmds := guestChecks[len(guestChecks)-1]
	for _, row := range guestChecks[:len(guestChecks)-1] {
		if cmds.name != jobs.CheckCommands || !slices.Contains(cmds.after, row.name) {
			t.Errorf("the job's commands do not wait for %s", row.name)
		}
	}
	var metadata guestCheck
	for _, row := range guestChecks {
		if row.name == jobs.CheckMetadata {
			metadata = row
		}
	}
	if len(metadata.after) != 0 {
		t.Errorf("metadata waits for %v: it must run beside provisioning from the moment SSH answers", metadata.after)
	}
}
