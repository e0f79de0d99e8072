package worker

import (
	"strings"
	"testing"

	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/jobs"
)

// The host-key pair of the hygiene fixtures (fixtures/hygiene/recipe.bash): only
// the boot tells a key every server keeps (debian12-sharedkeys: fail) from one
// the first boot replaced (debian12-buildkeys: pass, warned). The other classes
// are read offline in package inspect's integration test.
func TestIntegrationHygieneHostKeys(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	env.runner.inspect = inspect.Inspect // off in the suite's other jobs
	t.Run("debian12-sharedkeys", func(t *testing.T) {
		res, _ := env.runSample(t, "debian12-sharedkeys.json")
		if c := res.Check(jobs.CheckSSH); c == nil || c.Status != jobs.StatusPass || !strings.Contains(c.Reason, "pinned from the console") {
			t.Errorf("ssh: %+v", c)
		}
		if res.Inspection == nil || len(res.Inspection.Findings) < 3 {
			t.Fatalf("inspection: %+v", res.Inspection)
		}
		for _, f := range res.Inspection.Findings[:3] {
			if f.Rule != jobs.RuleSharedHostKeys || f.Level != jobs.LevelFail || !strings.HasPrefix(f.Path, "/etc/ssh/ssh_host_") {
				t.Errorf("finding %+v", f)
			}
		}
	})
	t.Run("debian12-buildkeys", func(t *testing.T) {
		res, _ := env.runSample(t, "debian12-buildkeys.json")
		var warned int
		for _, w := range res.Warnings {
			if strings.HasPrefix(w, "hygiene host-keys: /etc/ssh/ssh_host_") && strings.Contains(w, "the first boot replaced it") {
				warned++
			}
		}
		if warned != 3 {
			t.Errorf("%d host-key warnings, want 3 (ed25519, ECDSA, RSA): %q", warned, res.Warnings)
		}
		if c := res.Check(jobs.CheckHygiene); c == nil || c.Status != jobs.StatusPass {
			t.Errorf("hygiene: %+v", c)
		}
	})
}
