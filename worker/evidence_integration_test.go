package worker

import (
	"strings"
	"testing"

	"github.com/imagevet/imagevet/jobs"
)

// Images of the classes a publisher must get right, built like vendor images (real
// cloud-init, real sshd; fixtures/evidence/recipe.bash): each broken one fails on
// the check and with the reason expected.json names, carrying the console lines
// that prove it, long before the boot timeout; the one that makes its own host keys
// passes with a warning.
func TestIntegrationEvidence(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	for _, name := range []string{"debian12-nossh.json", "debian12-cdonly.json", "debian12-uefionly.json"} {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			res, _ := env.runSample(t, name)
			job, _ := loadSample(t, name)
			if took, boot := res.FinishedAt.Sub(res.StartedAt), job.Timeouts.Boot.D()*3; took >= boot {
				t.Errorf("verdict after %s: the console's evidence should end the job before the boot timeout (%s under TCG)", took, boot)
			}
			if res.ConsoleTail == "" {
				t.Error("a failed verdict must carry the console tail")
			}
		})
	}
	t.Run("debian12-ownkeys", func(t *testing.T) {
		res, _ := env.runSample(t, "debian12-ownkeys.json")
		c := res.Check(jobs.CheckSSH)
		if c == nil || !strings.Contains(c.Reason, "pinned from the console") {
			t.Errorf("ssh reason does not say the host key was trusted from the console: %+v", c)
		}
		if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "ignored the seeded host keys") {
			t.Errorf("warnings = %q", res.Warnings)
		}
	})
}
