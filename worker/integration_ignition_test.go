package worker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
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
