package main

import (
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/queue/queuetest"
)

func TestClientsNeverCreateTheQueue(t *testing.T) {
	url := queuetest.Server(t)
	code, _, errOut := runCmd(t, cmdSubmit, "--nats", url, writeJob(t, "pass-early"))
	if code != exitError || !strings.Contains(errOut, "queue setup") {
		t.Fatalf("submit to an empty server: %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, cmdJobs, "--nats", url); code != exitError || !strings.Contains(errOut, "not set up") {
		t.Fatalf("jobs on an empty server: %d %q", code, errOut)
	}
	code, out, errOut := runCmd(t, cmdQueue, "setup", "--nats", url, "--max-deliver", "4", "--ack-wait", "30s")
	if code != exitPass || !strings.Contains(out, "ack wait 30s, max deliver 4") || !strings.Contains(out, "replicas 1") {
		t.Fatalf("queue setup: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, cmdQueue, "setup", "--nats", url, "--replicas", "9"); code != exitError || !strings.Contains(errOut, "replicas 9") {
		t.Errorf("bad replicas: %d %q", code, errOut)
	}
	if code, out, _ := runCmd(t, cmdSubmit, "--nats", url, writeJob(t, "slow-queued")); code != exitPass || !strings.Contains(out, "accepted") {
		t.Fatalf("submit after setup: %d %q", code, out)
	}
	code, out, _ = runCmd(t, cmdJobs, "--nats", url)
	if code != exitPass || !strings.Contains(out, "slow-queued") || !strings.Contains(out, "queued") {
		t.Fatalf("jobs: %d %q", code, out)
	}
	code, out, errOut = runCmd(t, cmdCancel, "--nats", url, "--by", "release-manager", "--reason", "superseded", "slow-queued")
	if code != exitPass || !strings.Contains(out, "cancelled by release-manager: superseded") {
		t.Fatalf("cancel: %d %q %q", code, out, errOut)
	}
	if code, out, _ := runCmd(t, cmdCancel, "--nats", url, "slow-queued"); code != exitFail || !strings.Contains(out, "already finished") {
		t.Errorf("second cancel: %d %q", code, out)
	}
	if code, out, _ := runCmd(t, cmdJobs, "--nats", url); code != exitPass || !strings.Contains(out, "no jobs") {
		t.Errorf("jobs after cancel: %d %q", code, out)
	}
}

func TestJobsShowsARunningJobAndItsWorker(t *testing.T) {
	url := startWorker(t)
	if code, _, errOut := runCmd(t, cmdSubmit, "--nats", url, writeJob(t, "slow-running")); code != exitPass {
		t.Fatal(errOut)
	}
	var out string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, out, _ = runCmd(t, cmdJobs, "--nats", url)
		if strings.Contains(out, "running") && strings.Contains(out, "cmd-test") && strings.Contains(out, "boot") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out, "slow-running") || !strings.Contains(out, "running") || !strings.Contains(out, "cmd-test") {
		t.Fatalf("jobs: %q", out)
	}
	if code, out, _ := runCmd(t, cmdJobs, "--nats", url, "--workers"); code != exitPass || !strings.Contains(out, "cmd-test") {
		t.Errorf("workers: %d %q", code, out)
	}
	code, out, _ := runCmd(t, cmdCancel, "--nats", url, "slow-running")
	if code != exitPass || !strings.Contains(out, "running; its worker was told to stop") {
		t.Errorf("cancel: %d %q", code, out)
	}
	// A rerun of the cancelled job runs again as attempt 2.
	code, out, errOut := runCmd(t, cmdSubmit, "--nats", url, "--rerun", "--wait", "--json", "--timeout", "3s", writeJob(t, "slow-running"))
	if code != exitTimeout || !strings.Contains(out, `"timed_out": true`) {
		t.Errorf("rerun: %d %q %q", code, out, errOut)
	}
}
