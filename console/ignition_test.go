package console

import (
	"strings"
	"testing"
)

func TestIgnitionFailure(t *testing.T) {
	c := scan(t, readTestdata(t, "ignition-failed.log"))
	m, ok := c.Fatal()
	if !ok || m.Check != "ignition-failed" {
		t.Fatalf("fatal = %+v, %v; want ignition-failed (before the stage and emergency lines)", m, ok)
	}
	if !strings.Contains(m.String(), "Ignition failed: ") || !strings.Contains(m.String(), "Ignition could not provision") {
		t.Errorf("reason lacks Ignition's words: %q", m.String())
	}
	if _, ok := c.Milestone(MilestoneIgnitionStart); !ok {
		t.Error("Ignition start not seen")
	}
	if _, ok := c.Milestone(MilestoneIgnitionComplete); ok {
		t.Error("a failed Ignition must not reach Ignition Complete")
	}
}

func TestIgnitionStageFailureWithoutIgnitionsLog(t *testing.T) {
	// An initramfs that keeps Ignition's log off the console still shows systemd's line.
	c := scan(t, "[  OK  ] Reached target basic.target - Basic System.\n"+
		"         Starting ignition-fetch.service - Ignition (fetch)...\n"+
		"[FAILED] Failed to start ignition-fetch.service - Ignition (fetch).\n"+
		"You are in emergency mode. After logging in, type \"journalctl -xb\" to view\n")
	if m, ok := c.Fatal(); !ok || m.Check != "ignition-stage-failed" {
		t.Fatalf("fatal = %+v, %v; want ignition-stage-failed", m, ok)
	}
}

func TestIgnitionComplete(t *testing.T) {
	c := scan(t, "[    3.1] ignition[401]: Ignition 2.14.0\n"+
		"[    3.2] ignition[401]: failed to fetch config from metadata service: Get \"http://169.254.169.254/openstack/latest/user_data\": dial tcp 169.254.169.254:80: connect: network is unreachable\n"+
		"[  OK  ] Finished ignition-files.service - Ignition (files).\n"+
		"[  OK  ] Reached target ignition-complete.target - Ignition Complete.\n")
	if m, ok := c.Fatal(); ok {
		t.Fatalf("a successful first boot judged fatal: %s (one source failing in the race is normal)", m)
	}
	if _, ok := c.Milestone(MilestoneIgnitionComplete); !ok {
		t.Error("Ignition Complete not seen")
	}
}

// Ignition waiting for a network its initramfs does not have: started, stalled (it
// gave up on the metadata service; systemd's job line), never complete, nothing fatal.
func TestIgnitionStalled(t *testing.T) {
	c := scan(t, readTestdata(t, "ignition-nonet.log"))
	if m, ok := c.Fatal(); ok {
		t.Fatalf("a stalled Ignition judged fatal: %s", m)
	}
	for _, name := range []string{MilestoneIgnitionStart, MilestoneIgnitionStalled} {
		if _, ok := c.Milestone(name); !ok {
			t.Errorf("milestone %s not seen", name)
		}
	}
	if _, ok := c.Milestone(MilestoneIgnitionComplete); ok {
		t.Error("Ignition Complete seen on a stalled first boot")
	}
}

// cloud-init's network stage waiting for a metadata service it cannot reach.
func TestCloudInitStalled(t *testing.T) {
	c := scan(t, readTestdata(t, "cloud-init-stalled.log"))
	if m, ok := c.Fatal(); ok {
		t.Fatalf("a stalled cloud-init judged fatal: %s", m)
	}
	m, ok := c.Milestone(MilestoneCloudInitStalled)
	if !ok || !strings.Contains(m.Line, "A start job is running for Initial cloud-init job") {
		t.Errorf("stall = %+v, %v", m, ok)
	}
	for _, name := range []string{MilestoneCloudInitConfig, MilestoneCloudInitFinal, MilestoneCloudInitDone} {
		if _, ok := c.Milestone(name); ok {
			t.Errorf("%s seen on a stalled init stage", name)
		}
	}
	if _, ok := scan(t, readTestdata(t, "debian-good.log")).Milestone(MilestoneCloudInitConfig); !ok {
		t.Error("cloud-init's config stage not seen on a good boot")
	}
}
