package worker

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/guest/sshprobe"
	"github.com/imagevet/imagevet/worker/vm/fake"
)

// These tests use the fake hypervisor (a scripted console log and a loopback SSH
// server or listener standing in for the guest) to prove the ssh stage's own
// logic: which host keys it trusts and when the console's evidence ends it.

func loginJob(id string) jobs.Job {
	job := testJob(id)
	job.Checks.Skip = []string{jobs.CheckHostname, jobs.CheckMetadata, jobs.CheckCloudInit, jobs.CheckCommands}
	job.Timeouts.Boot = jobs.Duration(60 * time.Second)
	job.Timeouts.Total = jobs.Duration(2 * time.Minute)
	job.Timeouts.AfterBoot = jobs.Duration(time.Second)
	return job
}

// runFake runs job on hv with a test runner, checks that the job cleaned up, and
// returns its result and how long it took.
func runFake(t *testing.T, hv *fake.Hypervisor, job jobs.Job) (jobs.Result, time.Duration) {
	t.Helper()
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	start := time.Now()
	res := r.Run(context.Background(), job, 1, nil)
	took := time.Since(start)
	assertCleanedUp(t, cfg, hv)
	return res, took
}

func keysBlock(keys ...ssh.PublicKey) []fake.Line {
	lines := []fake.Line{{Text: "-----BEGIN SSH HOST KEY KEYS-----"}}
	for _, k := range keys {
		lines = append(lines, fake.Line{Text: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " root@vet"})
	}
	return append(lines, fake.Line{Text: "-----END SSH HOST KEY KEYS-----"})
}

// A guest that made its own host key and printed it on the console passes, with
// the trust named in the reason and a warning on the result.
func TestHostKeyPrintedOnConsoleIsTrusted(t *testing.T) {
	addr, key := sshServerKey(t)
	hv := &fake.Hypervisor{SSHAddr: addr, Console: keysBlock(key)}
	res, took := runFake(t, hv, loginJob("printedkey"))
	if res.Verdict != jobs.VerdictPass {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	c := res.Check(jobs.CheckSSH)
	if c == nil || !strings.Contains(c.Reason, "pinned from the console") || !strings.Contains(c.Reason, ssh.FingerprintSHA256(key)) {
		t.Errorf("ssh reason does not name the console trust and the key: %+v", c)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "ignored the seeded host keys") {
		t.Errorf("warnings = %q, want one saying the image ignored the seeded host keys", res.Warnings)
	}
	// The pass records the stages its boot time is measured by (from the boot
	// stage's start to the ssh stage's end), what the family's next release is
	// compared with.
	if bt := inspect.BootTime(res); bt <= 0 || bt > took {
		t.Errorf("boot time %s (the job took %s) from stages %+v", bt, took, res.Stages)
	}
	if vt := inspect.VerdictTime(res); vt <= 0 || vt > took {
		t.Errorf("time to verdict %s (the job took %s)", vt, took)
	}
}

// For an Ignition job the same trust is worded truly: an Ignition seed carries no
// host keys, so the image ignored none.
func TestHostKeyPrintedOnConsoleIgnitionWording(t *testing.T) {
	addr, key := sshServerKey(t)
	hv := &fake.Hypervisor{SSHAddr: addr, Console: keysBlock(key)}
	job := ignitionTestJob("printedkey-ign", jobs.DatasourceMetadata)
	job.Checks.Skip = []string{jobs.CheckHostname, jobs.CheckMetadata, jobs.CheckIgnition}
	res, _ := runFake(t, hv, job)
	if res.Verdict != jobs.VerdictPass {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	if len(res.Warnings) != 1 || strings.Contains(res.Warnings[0], "ignored the seeded host keys") ||
		!strings.Contains(res.Warnings[0], "an Ignition seed carries no host keys") || !strings.Contains(res.Warnings[0], ssh.FingerprintSHA256(key)) {
		t.Errorf("warnings = %q, want one saying an Ignition seed carries no host keys, with the key", res.Warnings)
	}
	if c := res.Check(jobs.CheckSSH); c == nil || strings.Contains(c.Reason, "ignored the seeded") {
		t.Errorf("ssh check = %+v", c)
	}
}

// A host key neither seeded nor printed, once the guest listed its keys, fails ssh
// at once with both fingerprints.
func TestHostKeyNeitherSeededNorPrintedFailsAtOnce(t *testing.T) {
	addr, key := sshServerKey(t)
	other, _, _ := ed25519.GenerateKey(nil)
	otherKey, _ := ssh.NewPublicKey(other)
	hv := &fake.Hypervisor{SSHAddr: addr, Console: keysBlock(otherKey)}
	res, took := runFake(t, hv, loginJob("unprintedkey"))
	if took > 15*time.Second {
		t.Errorf("took %s; a key the console disowns should fail at once", took)
	}
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckSSH ||
		!strings.Contains(res.Reason, ssh.FingerprintSHA256(key)) || !strings.Contains(res.Reason, "seeded ssh-ed25519 SHA256:") {
		t.Fatalf("got %s/%s %q; want an ssh failure with the guest's and the seed's fingerprints", res.Verdict, res.FailedCheck, res.Reason)
	}
}

// Boot over (a login prompt) and nothing on port 22: fail after the grace, with
// the evidence and its time, long before the boot timeout.
func TestFailFastAfterLoginPrompt(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t), Console: []fake.Line{
		{Text: "Linux version 6.1.0"}, {After: 200 * time.Millisecond, Text: "vet-nossh login: "}}}
	res, took := runFake(t, hv, loginJob("nossh"))
	if took > 10*time.Second {
		t.Errorf("took %s with a 1 s after-boot grace", took)
	}
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckSSH ||
		!strings.Contains(res.Reason, "boot finished at 0 s (login prompt)") || !strings.Contains(res.Reason, "nothing answered on port 22 (no SSH banner) for") {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	if c := res.Check(jobs.CheckBoot); c == nil || c.Status != jobs.StatusPass {
		t.Errorf("boot = %+v, want pass: the guest booted", c)
	}
}

// cloud-init falling back to DataSourceNone fails at once, naming the likely cause.
func TestFailFastNoDatasource(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t), Console: []fake.Line{
		{Text: "Cloud-init v. 22.4.2 finished at Tue, 01 Dec 2026 00:00:40 +0000. Datasource DataSourceNone.  Up 40.12 seconds"}}}
	job := loginJob("nods")
	job.Timeouts.AfterBoot = jobs.Duration(30 * time.Second)
	res, took := runFake(t, hv, job)
	if took > 10*time.Second {
		t.Errorf("took %s", took)
	}
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckSSH ||
		!strings.Contains(res.Reason, "cloud-init used no datasource") || !strings.Contains(res.Reason, "does it only trust a config drive?") {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
}

// A guest that writes nothing at all and never answers fails boot as such.
func TestSilentGuestFailsBoot(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t)}
	res, _ := runFake(t, hv, loginJob("silent"))
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckBoot || !strings.Contains(res.Reason, "wrote nothing at all on its serial console") {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	if c := res.Check(jobs.CheckSSH); c == nil || c.Status != jobs.StatusSkip {
		t.Errorf("ssh = %+v, want skip", c)
	}
}

// SeaBIOS handing over to a disk whose boot code is zero, then silence: boot fails
// with the firmware's words once the grace has passed.
func TestFirmwareHandoverThenSilenceFailsBoot(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t), Console: []fake.Line{
		{Text: "SeaBIOS (version 1.16.2-debian-1.16.2-1)"}, {Text: "Booting from Hard Disk..."}}}
	res, took := runFake(t, hv, loginJob("uefionly"))
	if took > 10*time.Second {
		t.Errorf("took %s with a 1 s grace", took)
	}
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckBoot ||
		!strings.Contains(res.Reason, `"Booting from Hard Disk..."`) || !strings.Contains(res.Reason, "no BIOS boot code") {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
}

// Port 22 silent once systemd reached its multi-user target (every unit the boot
// wanted, sshd among them, has started) fails after the short settle; a login prompt
// alone, or a key refused by a listening server, still gets the whole grace. judge
// is read at chosen instants, so the test does not depend on this machine's speed.
func TestSettleAfterUnitsStarted(t *testing.T) {
	watch := func(t *testing.T, lines ...string) *console.Console {
		path := filepath.Join(t.TempDir(), "console.log")
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		con := console.Watch(ctx, path, console.DefaultRules())
		for deadline := time.Now().Add(10 * time.Second); len(con.Milestones()) < 1; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("console milestones never read")
			}
		}
		time.Sleep(100 * time.Millisecond)
		return con
	}
	const grace = 20 * time.Second
	judgeAt := func(con *console.Console, stage sshprobe.Stage, err error, at time.Duration) (string, bool) {
		w := &loginWatch{con: con, grace: grace, start: con.Started(), furthest: stage, lastErr: err, user: "debian"}
		_, reason, ok := w.judge(con.Started().Add(at))
		return reason, ok
	}
	units := watch(t, "[  OK  ] Reached target multi-user.target - Multi-User System.", "vet login: ")
	if r, ok := judgeAt(units, sshprobe.StageBanner, nil, 3*time.Second); ok {
		t.Errorf("verdict 3 s after multi-user (settle %s): %q", grace/4, r)
	}
	r, ok := judgeAt(units, sshprobe.StageBanner, nil, 7*time.Second)
	if !ok || !strings.Contains(r, "(init reached the end of boot)") || !strings.Contains(r, "nothing answered on port 22 (no SSH banner)") {
		t.Errorf("7 s after multi-user with port 22 silent: %v %q, want the settle's verdict", ok, r)
	}
	if r, ok := judgeAt(units, sshprobe.StageAuth, sshprobe.ErrAuthRejected, 7*time.Second); ok {
		t.Errorf("a listening server refusing the key got the settle, not the grace: %q", r)
	}
	// Attempts failed at the banner, then one logged in and runs its command (the
	// guest is slow to run it): port 22 answered, so no "nothing answered" verdict
	// after the settle, only the grace.
	w := &loginWatch{con: units, grace: grace, start: units.Started(), furthest: sshprobe.StageBanner, user: "debian"}
	w.reached(sshprobe.StageCommand)
	if _, r, ok := w.judge(units.Started().Add(7 * time.Second)); ok {
		t.Errorf("a login running its command got the settle's verdict: %q", r)
	}
	if _, r, ok := w.judge(units.Started().Add(22 * time.Second)); !ok || strings.Contains(r, "nothing answered") || !strings.Contains(r, "at command") {
		t.Errorf("a command still running after the grace: %v %q", ok, r)
	}
	if _, ok := judgeAt(units, sshprobe.StageAuth, sshprobe.ErrAuthRejected, 22*time.Second); !ok {
		t.Error("a key still refused after the grace: no verdict")
	}
	prompt := watch(t, "vet login: ")
	if r, ok := judgeAt(prompt, sshprobe.StageBanner, nil, 7*time.Second); ok {
		t.Errorf("a login prompt alone got the settle, not the grace: %q", r)
	}
	if r, ok := judgeAt(prompt, sshprobe.StageBanner, nil, 21*time.Second); !ok || !strings.Contains(r, "(login prompt)") {
		t.Errorf("a login prompt and the grace over: %v %q", ok, r)
	}
}
