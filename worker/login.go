package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/guest/sshprobe"
)

// errNotPrinted is why a host key that is not the seed's was refused.
var errNotPrinted = errors.New("not printed on the guest's console either")

// firmwareHandover is SeaBIOS's last line before it runs the disk's boot code: a
// disk whose boot code is zero (GPT made for UEFI only) runs nothing after it.
var firmwareHandover = regexp.MustCompile(`Booting from Hard Disk\.*\s*$`)

// watchInterval is how often the login watch reads the console's evidence.
const watchInterval = 250 * time.Millisecond

// loginWatch decides, while the SSH probe goes on, whether the console already
// proves the guest will never let us in: boot finished and SSH still failing for
// the after-boot grace, cloud-init without a datasource, a host key that is
// neither seeded nor printed once the guest listed its keys, a guest that never
// wrote a byte. Its verdict is a value read where the ssh stage ends.
type loginWatch struct {
	con      *console.Console
	seeded   []ssh.PublicKey
	grace    time.Duration
	start    time.Time // when the machine was started
	now      func() time.Time
	user     string
	seedKind string // the job's datasource
	// provisioningCheck is the job's provisioning check (cloud-init or ignition)
	// when it is required: a stage of that provisioning that stalls fails it; any
	// other stalled stage fails ssh.
	provisioningCheck string
	mu                sync.Mutex
	furthest          sshprobe.Stage
	lastErr           error // the latest failed attempt's error at the furthest stage
	verdict           *jobs.CheckResult
	onVerdict         func()
}

// failed notes one failed probe attempt.
func (w *loginWatch) failed(stage sshprobe.Stage, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if stage.Rank() >= w.furthest.Rank() {
		w.furthest, w.lastErr = stage, err
	}
}

// reached notes a probe attempt that got as far as stage: a guest that let us in
// has answered on port 22, though its command is still running, so the watch
// must not judge it silent.
func (w *loginWatch) reached(stage sshprobe.Stage) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if stage.Rank() > w.furthest.Rank() {
		w.furthest = stage
	}
}

// vouch accepts a host key that is not the seed's when the guest printed it on
// its console. A key neither seeded nor printed after the guest listed its host
// keys ends the stage at once.
func (w *loginWatch) vouch(key ssh.PublicKey) error {
	if _, ok := w.con.PrintedHostKey(key.Marshal()); ok {
		return nil
	}
	if at, listed := w.con.HostKeysListed(); listed {
		w.decide(jobs.CheckSSH, fmt.Sprintf("the guest's host key is neither the seed's nor one it printed on its console (host keys listed at %s): got %s %s, seeded %s",
			secs(at), key.Type(), ssh.FingerprintSHA256(key), fingerprints(w.seeded)))
	}
	return errNotPrinted
}

// decide records the first verdict and ends the probe.
func (w *loginWatch) decide(check, reason string) {
	w.mu.Lock()
	first := w.verdict == nil
	if first {
		w.verdict = &jobs.CheckResult{Name: check, Status: jobs.StatusFail, Reason: reason}
	}
	w.mu.Unlock()
	if first && w.onVerdict != nil {
		w.onVerdict()
	}
}

// result is the verdict the watch reached, if any.
func (w *loginWatch) result() (jobs.CheckResult, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.verdict == nil {
		return jobs.CheckResult{}, false
	}
	return *w.verdict, true
}

// run checks the evidence every watchInterval until ctx ends or a verdict is in.
func (w *loginWatch) run(ctx context.Context) {
	everyTick(ctx, watchInterval, func() bool {
		check, reason, ok := w.judge(w.now())
		if ok {
			w.decide(check, reason)
		}
		return ok
	})
}

// judge reads the console's evidence at now: which check fails and why, if the
// guest has shown it will not let us in.
func (w *loginWatch) judge(now time.Time) (string, string, bool) {
	w.mu.Lock()
	furthest, lastErr := w.furthest, w.lastErr
	w.mu.Unlock()
	elapsed := now.Sub(w.start)
	if w.con.BytesRead() == 0 && elapsed >= 2*w.grace {
		return jobs.CheckBoot, fmt.Sprintf("the guest wrote nothing at all on its serial console for %s and nothing answered on port 22: it never started booting (firmware or disk not found, or the machine hung)",
			secs(elapsed)), true
	}
	if last, ok := w.con.LastOutput(); ok && elapsed-last >= w.grace && firmwareHandover.MatchString(w.con.Tail(1)) {
		return jobs.CheckBoot, fmt.Sprintf("the firmware started the disk's boot code at %s (%q) and nothing followed for %s: the disk has no BIOS boot code (a UEFI-only image booted with BIOS? set machine.firmware uefi)",
			secs(last), strings.TrimSpace(w.con.Tail(1)), secs(elapsed-last)), true
	}
	if m, ok := w.con.Milestone(console.MilestoneNoDatasource); ok {
		return jobs.CheckSSH, fmt.Sprintf("cloud-init used no datasource (at %s: %s): %s", secs(m.Elapsed), m.Line, w.noSeedHint()), true
	}
	if s, ok := stalledStage(w.con, elapsed, w.grace); ok {
		check := jobs.CheckSSH
		if s.stage.Provisioning == w.provisioningCheck {
			check = w.provisioningCheck
		}
		return check, stallReason(w.con, s, elapsed), true
	}
	end, ok := w.bootEnd(furthest)
	if !ok {
		return "", "", false
	}
	wait := w.grace
	if furthest.Rank() < sshprobe.StageHandshake.Rank() {
		// Port 22 silent: once every unit the boot wanted has started, an SSH
		// server among them listens already, so a short settle is enough.
		if up, ok := w.unitsStarted(); ok && up.Elapsed+w.settle() < end.Elapsed+wait {
			end, wait = up, w.settle()
		}
	}
	if elapsed-end.Elapsed < wait {
		return "", "", false
	}
	evidence := fmt.Sprintf("boot finished at %s (%s)", secs(end.Elapsed), end.Reason)
	return jobs.CheckSSH, w.stillLockedOut(evidence, secs(elapsed-end.Elapsed), furthest, lastErr), true
}

// stillLockedOut is why ssh fails when the boot finished (evidence) and login
// still fails after: how far the probe got, and its latest error there.
func (w *loginWatch) stillLockedOut(evidence, after string, furthest sshprobe.Stage, lastErr error) string {
	switch {
	case furthest == "" || furthest == sshprobe.StageConnect || furthest == sshprobe.StageBanner:
		what := "nothing answered on port 22 (no connection)"
		if furthest == sshprobe.StageBanner {
			what = "nothing answered on port 22 (no SSH banner)"
		}
		return fmt.Sprintf("%s; %s for %s after (is an SSH server installed and enabled?)", evidence, what, after)
	case errors.Is(lastErr, sshprobe.ErrHostKeyMismatch):
		return fmt.Sprintf("%s; %s after, the guest's host key is still neither the seed's nor printed on its console: %s",
			evidence, after, jobs.FirstLine(lastErr.Error(), 300))
	case errors.Is(lastErr, sshprobe.ErrAuthRejected):
		return fmt.Sprintf("%s; %s after, the guest still rejects our key for user %q (it did not install the seed's authorized keys)",
			evidence, after, w.user)
	default:
		reason := "no attempt failed yet"
		if lastErr != nil {
			reason = jobs.FirstLine(lastErr.Error(), 300)
		}
		return fmt.Sprintf("%s; login still failing %s after, at %s: %s", evidence, after, furthest, reason)
	}
}

// bootEnd is the console line that says the guest finished booting, as far as
// the probe's progress is concerned. A guest whose port 22 never answered is done
// at its first end-of-boot line (SSH servers start before a login prompt); one
// that answers but refuses the key or the host key is done only when cloud-init,
// which installs both, has finished, if it runs at all.
func (w *loginWatch) bootEnd(furthest sshprobe.Stage) (console.Match, bool) {
	ends := console.BootEndMilestones()
	if furthest.Rank() >= sshprobe.StageHandshake.Rank() {
		if _, ci := w.con.Milestone(console.MilestoneCloudInitStart); ci {
			ends = []string{console.MilestoneCloudInitDone}
		}
	}
	var first console.Match
	var found bool
	for _, name := range ends {
		if m, ok := w.con.Milestone(name); ok && (!found || m.Elapsed < first.Elapsed) {
			first, found = m, true
		}
	}
	return first, found
}

// settle is how long port 22 may stay silent after unitsStarted: a quarter of
// the after-boot grace (5 s on KVM, 15 s under TCG by default).
func (w *loginWatch) settle() time.Duration { return w.grace / 4 }

// unitsStarted is the first console line saying the init started every unit of
// its boot: systemd reaching its multi-user target (a target is reached only after
// the units it wants, sshd among them, have started, or failed), or cloud-init's
// last stage, which runs after that target, finishing.
func (w *loginWatch) unitsStarted() (console.Match, bool) {
	var first console.Match
	var found bool
	if m, ok := w.con.Milestone(console.MilestoneBootFinished); ok && strings.Contains(m.Line, "Reached target") {
		first, found = m, true
	}
	if m, ok := w.con.Milestone(console.MilestoneCloudInitDone); ok && (!found || m.Elapsed < first.Elapsed) {
		first, found = m, true
	}
	return first, found
}

// stageStall is a provisioning stage that started and stalled: when it started,
// when it stalled and when it was last heard of (its stall, or its latest sign of
// work after it).
type stageStall struct {
	stage                   console.ProvisioningStage
	started, stalled, heard time.Duration
}

// stalledStage is the provisioning stage the console shows started and stalled,
// not completed since and quiet for at least grace, if any: one that will not
// complete.
func stalledStage(con *console.Console, elapsed, grace time.Duration) (stageStall, bool) {
	for _, st := range console.ProvisioningStages() {
		start, started := con.Milestone(st.Start)
		stall, stalled := con.Milestone(st.Stall)
		if !started || !stalled {
			continue
		}
		s := stageStall{stage: st, started: start.Elapsed, stalled: stall.Elapsed, heard: stall.Elapsed}
		if act, ok := con.Latest(st.Activity); ok && act.Elapsed > s.heard {
			s.heard = act.Elapsed
		}
		if elapsed-s.heard < grace {
			continue
		}
		done := false
		for _, name := range st.Done {
			_, seen := con.Milestone(name)
			done = done || seen
		}
		if !done {
			return s, true
		}
	}
	return stageStall{}, false
}

// stallHints say what a stalled stage's own lines point at.
var stallHints = []struct {
	lines *regexp.Regexp
	hint  string
}{
	{regexp.MustCompile(`(?i)network is unreachable|no route to host`), "its requests found no network"},
}

// stallReason is the one-line reason a stalled provisioning stage fails with: the
// stage, when it started, stalled and was last heard of, and the last thing it said.
func stallReason(con *console.Console, s stageStall, elapsed time.Duration) string {
	st := s.stage
	reason := fmt.Sprintf("%s started at %s and never completed: stalled at %s, last heard of at %s, not done %s later",
		st.Name, secs(s.started), secs(s.stalled), secs(s.heard), secs(elapsed-s.heard))
	lines := con.StageLines(st.Name)
	for i := len(lines) - 1; i >= 0; i-- {
		if m := st.Words.FindStringSubmatch(lines[i]); m != nil {
			reason += fmt.Sprintf("; its last words: %q", clip(m[1], 100))
			break
		}
	}
	for _, h := range stallHints {
		if slices.ContainsFunc(lines, h.lines.MatchString) {
			reason += " (" + h.hint + ")"
			break
		}
	}
	return reason
}

// stageDetail is a stalled stage's detail: its last console lines, each clipped,
// with only the last of systemd's running-job lines (one every half second).
func stageDetail(con *console.Console, st console.ProvisioningStage) string {
	var lines []string
	all := con.StageLines(st.Name)
	for i, l := range all {
		if !console.RunningJob.MatchString(l) || !slices.ContainsFunc(all[i+1:], console.RunningJob.MatchString) {
			lines = append(lines, l)
		}
	}
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	for i, l := range lines {
		lines[i] = clip(l, 300)
	}
	return "--- " + st.Name + " on the console (its last lines)\n" + strings.Join(lines, "\n")
}

// clip bounds s to n bytes, marking a cut with "…".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// noSeedHint says what a guest that read none of the seed probably wanted.
func (w *loginWatch) noSeedHint() string {
	if w.seedKind == jobs.DatasourceConfigDrive {
		return "the image did not read the config drive (config-2) seed; does it only trust NoCloud or a metadata service?"
	}
	return "the image did not read the NoCloud seed; does it only trust a config drive?"
}

// sshWait is what waiting for SSH found: the probe's client (nil unless the guest
// let us in), report and error, how long it took, and the console watch with the
// verdict it reached, if any, before the probe ended.
type sshWait struct {
	client  *sshprobe.Client
	report  sshprobe.ProbeReport
	err     error
	took    time.Duration
	watch   *loginWatch
	early   jobs.CheckResult
	decided bool
}

// awaitSSH waits for SSH within the (scaled) boot timeout while the login watch
// reads the console; a verdict from the watch ends the wait early. It judges
// nothing: judgeBoot, then login, read what it found.
func (j *jobRun) awaitSSH(guestCtx context.Context, scale func(jobs.Duration) time.Duration) sshWait {
	job := j.job
	bootStart := j.now()
	sshCtx, cancelSSH := context.WithTimeout(guestCtx, scale(job.Timeouts.Boot))
	defer cancelSSH()
	w := &loginWatch{con: j.con, seeded: j.keys.HostKeys(), grace: scale(job.Timeouts.AfterBoot), start: j.con.Started(),
		now: j.now, user: job.Guest.User, seedKind: job.Guest.Datasource, onVerdict: cancelSSH}
	if check := job.Guest.Provisioning; job.Checks.IsRequired(check) {
		// The provisioning values are its check's names: cloud-init, ignition.
		w.provisioningCheck = check
	}
	done := j.rec.checkStage("ssh")
	probe := sshprobe.ProbeConfig{Addr: j.machine.SSHAddr(), User: job.Guest.User, Signers: j.keys.Signers(), Logger: j.log, Failed: w.failed, Reached: w.reached}
	if job.Guest.HostKey == jobs.HostKeyAny {
		probe.HostKeyCallback = func(string, net.Addr, ssh.PublicKey) error { return nil }
	} else {
		probe.HostKeys, probe.Vouch = w.seeded, w.vouch
	}
	go w.run(sshCtx)
	client, report, err := sshprobe.Probe(sshCtx, probe)
	cancelSSH()
	done(err)
	wait := sshWait{client: client, report: report, err: err, took: j.now().Sub(bootStart), watch: w}
	wait.early, wait.decided = w.result()
	return wait
}

// login records the ssh check from what the wait found, once judgeBoot has
// judged the boot (a failed boot leaves ssh unjudged), with the trust the host
// key got. It returns the client, or nil when the job cannot go on.
func (j *jobRun) login(guestCtx context.Context, wait sshWait, booted bool) *sshprobe.Client {
	job, w, err, early, decided := j.job, wait.watch, wait.err, wait.early, wait.decided
	if !booted {
		j.rec.check(jobs.CheckResult{Name: jobs.CheckSSH, Status: jobs.StatusSkip, Reason: "boot failed"})
		return nil
	}
	if err != nil && !decided {
		// The boot deadline came while a stage that stalled still had not completed
		// (it kept saying something, so the grace never ran out): the cause all the same.
		if s, ok := stalledStage(j.con, j.now().Sub(w.start), 0); ok && s.stage.Provisioning == w.provisioningCheck {
			early, decided = jobs.CheckResult{Name: w.provisioningCheck, Reason: stallReason(j.con, s, j.now().Sub(w.start))}, true
		}
	}
	if err != nil && decided && early.Name == w.provisioningCheck {
		// A provisioning stage that never completed: nothing could log in before
		// it did, so its check fails, with the stage's own console lines.
		st := stageOf(early.Name)
		j.rec.check(jobs.CheckResult{Name: jobs.CheckSSH, Status: jobs.StatusSkip, Reason: "not judged: " + st.Name + " never completed, and the guest lets nobody in before it does",
			Detail: probeDetail(wait.report), Duration: jobs.Duration(wait.took)})
		j.rec.check(jobs.CheckResult{Name: early.Name, Status: jobs.StatusFail, Reason: j.withProvisioningHint(early.Reason),
			Detail: stageDetail(j.con, st)})
		return nil
	}
	if err != nil {
		reason := sshReason(wait.report, err, job.Guest.Provisioning)
		if total, ok := jobTimedOut(guestCtx); ok {
			reason = fmt.Sprintf("%s (%s)", reason, total)
		}
		if decided {
			reason = early.Reason
		} else if !bootEnded(j.con) {
			reason += "; " + bootProgress(j.con)
		}
		reason = j.withProvisioningHint(reason)
		j.rec.check(jobs.CheckResult{Name: jobs.CheckSSH, Status: jobs.StatusFail, Reason: reason,
			Detail: probeDetail(wait.report), Duration: jobs.Duration(wait.took)})
		return nil
	}
	trust := j.hostKeyTrust(wait.report.HostKey, w.seeded, job.Guest.HostKey)
	j.hostKey = wait.report.HostKey
	j.rec.check(jobs.CheckResult{Name: jobs.CheckSSH, Status: jobs.StatusPass,
		Reason: fmt.Sprintf("login as %s after %s, %s", job.Guest.User, wait.took.Round(100*time.Millisecond), trust),
		Detail: probeDetail(wait.report), Duration: jobs.Duration(wait.took)})
	return wait.client
}

// stageOf is the provisioning stage a provisioning value (a check's name) names.
func stageOf(provisioning string) console.ProvisioningStage {
	for _, st := range console.ProvisioningStages() {
		if st.Provisioning == provisioning {
			return st
		}
	}
	return console.ProvisioningStage{Name: provisioning, Lines: regexp.MustCompile(`^$`)}
}

// hostKeyTrust says which trust let the host key in, recording a warning when it
// was not the seed's.
func (j *jobRun) hostKeyTrust(key ssh.PublicKey, seeded []ssh.PublicKey, policy string) string {
	if key == nil {
		return "host key unknown"
	}
	fp := key.Type() + " " + ssh.FingerprintSHA256(key)
	for _, k := range seeded {
		if bytes.Equal(k.Marshal(), key.Marshal()) {
			return "host key pinned to the seed's"
		}
	}
	if policy == jobs.HostKeyAny {
		j.rec.warn(jobs.CheckSSH, "host key not pinned (guest.host_key any): "+fp)
		return "host key not pinned (guest.host_key any): " + fp
	}
	how, _ := j.con.PrintedHostKey(key.Marshal())
	msg := fmt.Sprintf("host key pinned from the console (its %s): the image ignored the seeded host keys and presented its own, %s", how, fp)
	if j.job.Guest.Provisioning == jobs.ProvisioningIgnition {
		// An Ignition config carries no host keys: the image's own are all there is.
		msg = fmt.Sprintf("host key pinned from the console (its %s): an Ignition seed carries no host keys, so the image presented its own, %s", how, fp)
	}
	j.rec.warn(jobs.CheckSSH, msg)
	return msg
}

// fingerprints lists keys' SHA256 fingerprints for a reason.
func fingerprints(keys []ssh.PublicKey) string {
	fps := make([]string, len(keys))
	for i, k := range keys {
		fps[i] = k.Type() + " " + ssh.FingerprintSHA256(k)
	}
	return strings.Join(fps, " or ")
}

// secs renders a duration as whole seconds ("43 s"), as console evidence is given.
func secs(d time.Duration) string { return fmt.Sprintf("%.0f s", d.Seconds()) }
