package inspect

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// The hygiene fixtures (fixtures/hygiene/recipe.bash) read offline, no boot: each
// one's evidence and the findings it gives. The host-key pair needs the boot to
// tell which key the server presents: the worker's integration test has them.
func TestIntegrationHygieneFixtures(t *testing.T) {
	cases := []struct {
		fixture string
		check   func(t *testing.T, ev *jobs.HygieneEvidence)
		fails   []string // rules at fail, with no boot seen
	}{
		{"debian12-password", func(t *testing.T, ev *jobs.HygieneEvidence) {
			if !slices.Equal(ev.PasswordAccounts, []string{"root"}) || len(ev.EmptyPasswords) != 0 ||
				ev.SSHPasswordAuth != "yes" || ev.SSHPasswordAuthAt != "/etc/ssh/sshd_config.d/50-imagevet-password.conf:2" ||
				ev.SSHPermitRootLogin != "yes" {
				t.Errorf("evidence %+v", ev)
			}
		}, []string{jobs.RulePasswordAccount, jobs.RuleSSHPasswordAuth}},
		{"debian12-leftovers", func(t *testing.T, ev *jobs.HygieneEvidence) {
			if ev.MachineID != "3f6c1a7e9b2d4c5e8f0a1b2c3d4e5f60" ||
				!slices.Equal(ev.CloudInitState, []string{"/var/lib/cloud/instances/iid-imagevet-build"}) ||
				!slices.Equal(ev.Histories, []string{"/root/.bash_history"}) ||
				!slices.Equal(ev.DHCPLeases, []string{"/var/lib/dhcp/dhclient.eth0.leases"}) ||
				len(ev.PasswordAccounts) != 0 || len(ev.AuthorizedKeys) != 0 || len(ev.HostKeys) != 0 || len(ev.WorldWritableEtc) != 0 {
				t.Errorf("evidence %+v", ev)
			}
		}, []string{jobs.RuleMachineID}},
	}
	for _, c := range cases {
		t.Run(c.fixture, func(t *testing.T) {
			file := needGuestfish(t, c.fixture)
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
			defer cancel()
			ins := Inspect(ctx, file, "qcow2", Config{TCG: true, Nice: true})
			if ins.Evidence == nil {
				t.Fatalf("no evidence: %s", ins.Error)
			}
			t.Logf("inspected in %s", ins.Took.D().Round(time.Second))
			c.check(t, ins.Evidence)
			var fails []string
			for _, f := range Hygiene(ins.Evidence, Boot{}, nil) {
				if f.Level == jobs.LevelFail && !slices.Contains(fails, f.Rule) {
					fails = append(fails, f.Rule)
				}
			}
			if !slices.Equal(fails, c.fails) {
				t.Errorf("rules at fail %v, want %v", fails, c.fails)
			}
		})
	}
}
