package worker

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/guest/sshprobe"
	"github.com/imagevet/imagevet/worker/vm/fake"
)

// A provisioning stage that starts, stalls and never completes is what keeps the
// guest from letting anybody in: the login watch fails that stage's check once the
// after-boot grace has passed since the console showed the stall, naming the stage,
// when it started and its last words, instead of blaming SSH minutes later.

// recordedConsole watches a console log from testdata and returns it once every
// line is read. ignition-nonet.log is the serial console of the flatcar-like-nonet
// fixture under flatcar-like-nonet.json (recorded by the worker, TCG); the
// cloud-init one is written after cloud-init 22.4's lines.
func recordedConsole(t *testing.T, name string) *console.Console {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "console", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	con := console.Watch(context.Background(), path, console.DefaultRules())
	if err := con.Close(); err != nil {
		t.Fatal(err)
	}
	return con
}

func TestStalledProvisioningStage(t *testing.T) {
	const grace = 60 * time.Second
	judgeAt := func(con *console.Console, check string, at time.Duration) (string, string, bool) {
		w := &loginWatch{con: con, grace: grace, start: con.Started(), furthest: sshprobe.StageBanner, provisioningCheck: check}
		return w.judge(con.Started().Add(at))
	}
	for _, tc := range []struct {
		name, log, check, stall string
		want                    []string
	}{
		{"ignition without network", "ignition-nonet.log", jobs.CheckIgnition, console.MilestoneIgnitionStalled,
			[]string{"Ignition started at ", "never completed: stalled at ", `its last words: "failed to fetch config from metadata service: unable to fetch resource in time"`, "found no network"}},
		{"cloud-init's network stage", "cloud-init-stalled.log", jobs.CheckCloudInit, console.MilestoneCloudInitStalled,
			[]string{"cloud-init's init stage started at ", "never completed", "its last words: ", "url_helper.py[WARNING]", "found no network"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			con := recordedConsole(t, tc.log)
			stall, ok := con.Milestone(tc.stall)
			if !ok {
				t.Fatalf("the console's stall (%s) not seen; milestones %+v", tc.stall, con.Milestones())
			}
			if _, ok := con.Fatal(); ok {
				t.Fatal("a stalled stage is not a fatal line")
			}
			if check, reason, ok := judgeAt(con, tc.check, stall.Elapsed+grace-time.Second); ok {
				t.Errorf("verdict before the grace ran out: %s %q", check, reason)
			}
			check, reason, ok := judgeAt(con, tc.check, stall.Elapsed+grace+time.Second)
			if !ok || check != tc.check {
				t.Fatalf("after the grace: %v %s %q; want the %s check failing", ok, check, reason, tc.check)
			}
			for _, w := range tc.want {
				if !strings.Contains(reason, w) {
					t.Errorf("reason lacks %q: %q", w, reason)
				}
			}
			if len(reason) > 300 {
				t.Errorf("reason of %d bytes; a result keeps 300: %q", len(reason), reason)
			}
			detail := stageDetail(con, stageOf(tc.check))
			if n := len(console.RunningJob.FindAllString(detail, -1)); n > 1 || !strings.Contains(detail, "[") {
				t.Errorf("detail has %d of systemd's running-job lines (want the last only):\n%s", n, detail)
			}
			t.Logf("reason: %s\ndetail:\n%s", reason, detail)
			// A job that does not require the stage's check fails ssh with the same words.
			if check, reason, _ := judgeAt(con, "", stall.Elapsed+grace+time.Second); check != jobs.CheckSSH || !strings.Contains(reason, "never completed") {
				t.Errorf("provisioning check not required: %s %q, want ssh", check, reason)
			}
		})
	}
}

// A stall that the stage recovers from (a config source failing in Ignition's race,
// systemd's running-job line on a slow boot) decides nothing.
func TestStallThenCompleteIsNoVerdict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	lines := "[    3.1] ignition[401]: Ignition 2.14.0\n" +
		"[    3.2] ignition[401]: failed to fetch config from metadata service: unable to fetch resource in time\n" +
		"[  *** ] A start job is running for Ignition (fetch) (12s / no limit)\n" +
		"[  OK  ] Reached target ignition-complete.target - Ignition Complete.\n"
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	con := console.Watch(context.Background(), path, console.DefaultRules())
	con.Close()
	w := &loginWatch{con: con, grace: time.Second, start: con.Started(), furthest: sshprobe.StageBanner, provisioningCheck: jobs.CheckIgnition}
	if check, reason, ok := w.judge(con.Started().Add(time.Hour)); ok {
		t.Errorf("a completed stage judged stalled: %s %q", check, reason)
	}
}

// The whole job on the fake hypervisor: Ignition stalls with no network, port 22
// stays silent; the ignition check fails after the grace with the stage's console
// lines, ssh is not blamed, and the checks after it are listed as not run.
func TestRunStalledIgnitionFailsIgnition(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: silentListener(t), Console: []fake.Line{
		{Text: "[    2.1] ignition[412]: Ignition 2.14.0"},
		{After: 100 * time.Millisecond, Text: "[    2.2] ignition[412]: Stage: fetch-offline"},
		{After: 50 * time.Millisecond, Text: "[    2.3] ignition[412]: failed to fetch config: resource requires networking"},
		{After: 100 * time.Millisecond, Text: `[    5.0] ignition[470]: GET error: Get "http://169.254.169.254/openstack/latest/user_data": dial tcp 169.254.169.254:80: connect: network is unreachable`},
		{After: 100 * time.Millisecond, Text: "[   35.0] ignition[470]: failed to fetch config from metadata service: unable to fetch resource in time"},
		{After: 100 * time.Millisecond, Text: "[  *** ] A start job is running for Ignition (fetch) (40s / no limit)"},
	}}
	job := ignitionTestJob("ign-stall", jobs.DatasourceMetadata)
	job.Timeouts.AfterBoot = jobs.Duration(time.Second)
	job.Commands = []jobs.Command{{Run: "true"}}
	res, took := runFake(t, hv, job)
	if took > 15*time.Second {
		t.Errorf("took %s with a 1 s grace", took)
	}
	t.Logf("reason: %s", res.Reason)
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckIgnition ||
		!strings.Contains(res.Reason, "Ignition started at 0 s and never completed") ||
		!strings.Contains(res.Reason, `its last words: "failed to fetch config from metadata service: unable to fetch resource in time"`) {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	c := res.Check(jobs.CheckIgnition)
	if !strings.Contains(c.Detail, "GET error") || !strings.Contains(c.Detail, "A start job is running for Ignition (fetch)") {
		t.Errorf("ignition detail lacks the stage's console lines:\n%s", c.Detail)
	}
	if c := res.Check(jobs.CheckSSH); c == nil || c.Status != jobs.StatusSkip || !strings.Contains(c.Reason, "Ignition never completed") {
		t.Errorf("ssh = %+v, want not judged", c)
	}
	for _, name := range []string{jobs.CheckHostname, jobs.CheckMetadata, jobs.CheckCommands} {
		if c := res.Check(name); c == nil || c.Reason != "not run: ignition failed" {
			t.Errorf("%s = %+v, want not run", name, c)
		}
	}
}

// silentListener accepts TCP connections and holds them without a byte, as qemu's
// user-mode forward does while the guest has no network.
func silentListener(t *testing.T) string {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	return loopbackListener(t, func(c net.Conn) {
		defer c.Close()
		select {
		case <-done:
		case <-time.After(time.Minute):
		}
	})
}

// A stage still at work after its stall (a slow first boot: Ignition logging its
// next steps) is judged only once it has been quiet for the grace.
func TestStallClockRestartsOnActivity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	write := func(s string) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	write("[    3.1] ignition[401]: Ignition 2.14.0\n[  *** ] A start job is running for Ignition (fetch) (12s / no limit)\n")
	con := console.Watch(context.Background(), path, console.DefaultRules())
	defer con.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := con.Milestone(console.MilestoneIgnitionStalled); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("stall never read")
		}
	}
	time.Sleep(500 * time.Millisecond)
	write("[   20.0] ignition[470]: GET result: OK\n")
	var act console.Match
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var ok bool
		if act, ok = con.Latest(console.ActivityIgnition); ok && strings.Contains(act.Line, "GET result") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("activity never read")
		}
	}
	stall, _ := con.Milestone(console.MilestoneIgnitionStalled)
	const grace = 10 * time.Second
	w := &loginWatch{con: con, grace: grace, start: con.Started(), furthest: sshprobe.StageBanner, provisioningCheck: jobs.CheckIgnition}
	if _, reason, ok := w.judge(con.Started().Add(stall.Elapsed + grace + 100*time.Millisecond)); ok {
		t.Errorf("verdict a grace after the stall although Ignition was at work since: %q", reason)
	}
	if check, reason, ok := w.judge(con.Started().Add(act.Elapsed + grace + 100*time.Millisecond)); !ok || check != jobs.CheckIgnition || !strings.Contains(reason, "last heard of at") {
		t.Errorf("a grace after its last sign of work: %v %s %q", ok, check, reason)
	}
}

// A stalled stage that keeps saying something until the boot deadline is still
// what failed: its check fails at the deadline, naming it, not ssh.
func TestStalledStageAtBootDeadlineFailsIt(t *testing.T) {
	lines := []fake.Line{
		{Text: "[    2.1] ignition[412]: Ignition 2.14.0"},
		{Text: "[    2.2] ignition[412]: failed to fetch config from metadata service: unable to fetch resource in time"},
	}
	for i := range 60 {
		lines = append(lines, fake.Line{After: time.Duration(i+1) * 200 * time.Millisecond,
			Text: fmt.Sprintf("[ %4d.0] ignition[470]: GET error: Get \"http://169.254.169.254/openstack/latest/user_data\": dial tcp: connect: network is unreachable", 3+i)})
	}
	hv := &fake.Hypervisor{SSHAddr: silentListener(t), Console: lines}
	job := ignitionTestJob("ign-busy", jobs.DatasourceMetadata)
	job.Timeouts.Boot = jobs.Duration(5 * time.Second)
	job.Timeouts.AfterBoot = jobs.Duration(3 * time.Second)
	res, took := runFake(t, hv, job)
	t.Logf("after %s: %s", took.Round(time.Millisecond), res.Reason)
	if took < 5*time.Second {
		t.Errorf("decided after %s, before the boot deadline, while Ignition was still at work", took)
	}
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckIgnition || !strings.Contains(res.Reason, "Ignition started at 0 s and never completed") {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
}
