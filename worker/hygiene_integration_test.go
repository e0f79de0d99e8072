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
	names := []string{"debian12-sharedkeys.json", "debian12-buildkeys.json"}
	eachSample(t, names, newParallelIntegrationEnv, func(t *testing.T, env *integrationEnv, name string) {
		env.runner.inspect = inspect.Inspect // off in the suite's other jobs
		res, _ := env.runSample(t, name)
		if name == "debian12-sharedkeys.json" {
			assertSharedHostKeys(t, res)
		} else {
			assertReplacedHostKeys(t, res)
		}
	})
}

// assertSharedHostKeys: the three host keys debian12-sharedkeys keeps are the
// server's own, pinned from the console, and shared-host-keys fails.
func assertSharedHostKeys(t *testing.T, res jobs.Result) {
	t.Helper()
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
}

// assertReplacedHostKeys: debian12-buildkeys' first boot replaced the three
// host keys its build left, which hygiene warns of and passes.
func assertReplacedHostKeys(t *testing.T, res jobs.Result) {
	t.Helper()
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
}
