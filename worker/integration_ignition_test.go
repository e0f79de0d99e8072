package worker

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm"
)

// The flatcar-like fixture is provisioned by Debian's real Ignition (2.14) in its
// initramfs: these tests boot it under libvirt (TCG) through the worker.

// flatcar-like passes over the config drive (UEFI) and over the metadata service alone.
func TestIntegrationFlatcarLike(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	for _, name := range []string{"flatcar-like.json", "flatcar-like-metadata.json"} {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			res, _ := env.runSample(t, name)
			c := res.Check(jobs.CheckIgnition)
			if c == nil || c.Status != jobs.StatusPass || !strings.Contains(c.Reason, "/etc/.ignition-result.json") {
				t.Fatalf("ignition check: %+v", c)
			}
			if ci := res.Check(jobs.CheckCloudInit); ci != nil {
				t.Errorf("an Ignition job ran the cloud-init check: %+v", ci)
			}
			if !strings.Contains(c.Reason, "users core") {
				t.Errorf("the check does not name the login user: %q", c.Reason)
			}
		})
	}
}

// The broken variant's Ignition rejects its own base config: boot fails with
// Ignition's words within seconds of the line.
func TestIntegrationFlatcarLikeBrokenFailsFast(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	res, events := env.runSample(t, "flatcar-like-broken.json")
	var seen time.Time
	for _, p := range events {
		if p.Stage == "boot" && p.Event == "info" && strings.HasPrefix(p.Message, "fatal console line") && seen.IsZero() {
			seen = p.Time
		}
	}
	if seen.IsZero() {
		t.Fatalf("no fatal console event in %+v", events)
	}
	if d := res.FinishedAt.Sub(seen); d > 10*time.Second {
		t.Errorf("verdict %s after the fatal line; want within 10s", d)
	}
	if !strings.Contains(res.ConsoleTail, "Ignition failed") {
		t.Errorf("console tail lacks Ignition's failure: %q", res.ConsoleTail)
	}
}

// A cloud-init image given an Ignition job, and an Ignition image given a cloud-init
// job, fail naming the mismatch. Which check fails depends on how far the guest gets
// before its deadline (on a quiet host: expected.json's; on a host so loaded that SSH
// never answers: ssh), so this asserts the verdict and that the reason names the
// mismatch, whatever the check.
func TestIntegrationProvisioningMismatch(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	for _, name := range []string{"flatcar-like-cloudinit.json", "debian12-ignition.json"} {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			job, want := loadSample(t, name)
			if _, err := os.Stat(filepath.Join(env.fixtures, job.Image.Source)); err != nil {
				skipOrFail(t, "fixture %s not built: %v", job.Image.Source, err)
			}
			res := env.runner.Run(context.Background(), job, 1, nil)
			if res.Verdict != jobs.VerdictFail {
				t.Fatalf("%s: got %s/%s %q; want fail", name, res.Verdict, res.FailedCheck, res.Reason)
			}
			if !strings.Contains(res.Reason, "guest.provisioning") {
				t.Fatalf("%s: got %s/%s %q; want a fail naming guest.provisioning", name, res.Verdict, res.FailedCheck, res.Reason)
			}
			if res.FailedCheck != want.FailedCheck {
				t.Logf("%s: failed %s, not %s as on a quiet host (%q)", name, res.FailedCheck, want.FailedCheck, res.Reason)
			}
		})
	}
}

// Ignition without a network in its initramfs, given the metadata service alone,
// waits for ever: the ignition check fails naming the stalled stage within the
// after-boot grace (+10 s) of Ignition's last word (giving up on the metadata
// service), not ssh at the boot deadline, and lists the checks it kept from running.
func TestIntegrationFlatcarLikeNoNetFailsIgnition(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	const name = "flatcar-like-nonet.json"
	watches := make(chan *console.Console, 1)
	env.hv.mu.Lock()
	env.hv.onBoot = func(s vm.Spec) {
		watches <- console.Watch(context.Background(), s.ConsoleLog, []console.Rule{
			{Name: "evidence", Kind: console.Milestone, Pattern: regexp.MustCompile(evidenceOf[name]), Reason: "evidence"}})
	}
	env.hv.mu.Unlock()
	res, _ := env.runSample(t, name)
	job, _ := loadSample(t, name)
	w := <-watches
	w.Close()
	evidence, ok := w.Milestone("evidence")
	if !ok {
		t.Fatalf("the console never showed %q", evidenceOf[name])
	}
	decided := res.FinishedAt
	for _, s := range res.Stages {
		if s.Name == "cleanup" {
			decided = s.Start
		}
	}
	grace := time.Duration(float64(job.WithDefaults().Timeouts.AfterBoot) * env.cfg.TCGFactor)
	t.Logf("evidence at %.1f s, verdict %.1f s after it", evidence.Time.Sub(res.StartedAt).Seconds(), decided.Sub(evidence.Time).Seconds())
	if d := decided.Sub(evidence.Time); d > grace+10*time.Second {
		t.Errorf("verdict %s after Ignition's last word; want within the grace (%s) + 10 s", d.Round(time.Second), grace)
	}
	c := res.Check(jobs.CheckIgnition)
	if !strings.Contains(c.Reason, `its last words: "failed to fetch config from metadata service`) || !strings.Contains(c.Detail, "GET error") {
		t.Errorf("ignition check lacks Ignition's words: %+v", c)
	}
	if c := res.Check(jobs.CheckSSH); c == nil || c.Status != jobs.StatusSkip {
		t.Errorf("ssh = %+v, want not judged", c)
	}
	for _, name := range []string{jobs.CheckHostname, jobs.CheckMetadata, jobs.CheckCommands} {
		if c := res.Check(name); c == nil || !strings.HasPrefix(c.Reason, jobs.NotRunPrefix) {
			t.Errorf("%s = %+v, want listed as not run", name, c)
		}
	}
}
