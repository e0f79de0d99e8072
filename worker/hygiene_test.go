package worker

import (
	"crypto/ed25519"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm/fake"
)

func TestJudgeHygiene(t *testing.T) {
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(slices.Repeat([]byte{7}, ed25519.SeedSize)).Public())
	if err != nil {
		t.Fatal(err)
	}
	fp := ssh.FingerprintSHA256(pub)
	key := jobs.HostKeyFile{Path: "/etc/ssh/ssh_host_ed25519_key.pub", Type: "ssh-ed25519", Fingerprint: fp}
	job := jobs.Job{}
	inspection := func(ev jobs.HygieneEvidence) *jobs.Inspection { return &jobs.Inspection{Evidence: &ev} }

	t.Run("shared host keys fail", func(t *testing.T) {
		in := inspection(jobs.HygieneEvidence{HostKeys: []jobs.HostKeyFile{key}, MachineID: "abc", Histories: []string{"/root/.bash_history"}})
		o := judgeHygiene(job, in, pub)
		if o.check.Status != jobs.StatusFail || !o.check.Required ||
			!strings.HasPrefix(o.check.Reason, "shared-host-keys: /etc/ssh/ssh_host_ed25519_key.pub: ") ||
			!strings.HasSuffix(o.check.Reason, "(and 1 more findings at fail)") {
			t.Errorf("check %+v", o.check)
		}
		if len(in.Findings) != 3 || len(o.warnings) != 1 || !strings.HasPrefix(o.warnings[0], "hygiene shell-history: /root/.bash_history: ") {
			t.Errorf("findings %v, warnings %q", in.Findings, o.warnings)
		}
		if !strings.Contains(o.check.Detail, "warn shell-history: /root/.bash_history") {
			t.Errorf("detail %q", o.check.Detail)
		}
	})
	t.Run("replaced host keys warn", func(t *testing.T) {
		other, _ := ssh.NewPublicKey(ed25519.NewKeyFromSeed(slices.Repeat([]byte{8}, ed25519.SeedSize)).Public())
		in := inspection(jobs.HygieneEvidence{HostKeys: []jobs.HostKeyFile{key}})
		o := judgeHygiene(job, in, other)
		if o.check.Status != jobs.StatusPass || o.check.Reason != "nothing at fail; 1 warnings" || len(o.warnings) != 1 ||
			!strings.Contains(o.warnings[0], "host-keys: /etc/ssh/ssh_host_ed25519_key.pub: ") {
			t.Errorf("check %+v, warnings %q", o.check, o.warnings)
		}
	})
	t.Run("levels from the job", func(t *testing.T) {
		j := jobs.Job{Checks: jobs.CheckSpec{Hygiene: jobs.HygieneLevels{jobs.RuleMachineID: jobs.LevelWarn}}}
		o := judgeHygiene(j, inspection(jobs.HygieneEvidence{MachineID: "abc"}), nil)
		if o.check.Status != jobs.StatusPass || len(o.warnings) != 1 {
			t.Errorf("machine id at warn: %+v %q", o.check, o.warnings)
		}
	})
	t.Run("clean", func(t *testing.T) {
		o := judgeHygiene(job, inspection(jobs.HygieneEvidence{SSHPasswordAuth: "yes"}), pub)
		if o.check.Status != jobs.StatusPass || o.check.Reason != "nothing a tenant would inherit" || o.warnings != nil {
			t.Errorf("%+v %q", o.check, o.warnings)
		}
	})
	t.Run("unreadable image", func(t *testing.T) {
		o := judgeHygiene(job, &jobs.Inspection{Error: "libguestfs: no operating system found"}, pub)
		if o.check.Status != jobs.StatusSkip || !strings.HasSuffix(o.check.Reason, ": libguestfs: no operating system found") {
			t.Errorf("%+v", o.check)
		}
		if o := judgeHygiene(job, nil, pub); o.check.Status != jobs.StatusSkip {
			t.Errorf("no inspection: %+v", o.check)
		}
	})
}

// A job whose image carries the host key the booted server presents, and a
// history: hygiene fails on the key, naming its file; the history is a warning;
// every finding is on the result's inspection.
func TestHygieneCheckInTheLifecycle(t *testing.T) {
	addr, key := sshServerKey(t)
	hv := &fake.Hypervisor{SSHAddr: addr, Console: keysBlock(key)}
	ev := jobs.HygieneEvidence{
		HostKeys:  []jobs.HostKeyFile{{Path: "/etc/ssh/ssh_host_ed25519_key.pub", Type: key.Type(), Fingerprint: ssh.FingerprintSHA256(key)}},
		Histories: []string{"/root/.bash_history"},
	}
	bookworm := jobs.Inspection{OS: "linux", Distro: "debian", Version: "12.15", Codename: "bookworm", Arch: "x86_64", Evidence: &ev}
	res, _ := runInspected(t, hv, debian12Job("shared-keys"), factsAfter(t, 0, bookworm))
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckHygiene ||
		!strings.HasPrefix(res.Reason, "shared-host-keys: /etc/ssh/ssh_host_ed25519_key.pub: the booted server presents this ssh-ed25519 key") {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	if c := res.Check(jobs.CheckIdentity); c == nil || c.Status != jobs.StatusPass {
		t.Errorf("identity %+v", c)
	}
	if res.Inspection == nil || len(res.Inspection.Findings) != 2 {
		t.Fatalf("findings not on the result: %+v", res.Inspection)
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.HasPrefix(w, "hygiene shell-history: /root/.bash_history: ") }) {
		t.Errorf("warnings %q", res.Warnings)
	}

	// Set to warn by the job, the shared key passes, warned.
	job := debian12Job("shared-keys-warn")
	job.Checks.Hygiene = jobs.HygieneLevels{jobs.RuleSharedHostKeys: jobs.LevelWarn}
	res, _ = runInspected(t, hv, job, factsAfter(t, 0, bookworm))
	if res.Verdict != jobs.VerdictPass || len(res.Warnings) < 2 {
		t.Fatalf("got %s/%s %q, warnings %q", res.Verdict, res.FailedCheck, res.Reason, res.Warnings)
	}
}
