package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/daemon"

	"github.com/imagevet/imagevet/queue"
	"github.com/imagevet/imagevet/queue/queuetest"
)

// verdictRunner answers by job id prefix: pass-*, fail-*, error-*, slow-* (never
// within the test's timeout).
type verdictRunner struct{}

func (verdictRunner) Run(ctx context.Context, job jobs.Job, _ int, progress func(jobs.Progress)) jobs.Result {
	progress(jobs.Progress{Stage: "boot", Event: "start"})
	r := jobs.Result{Checks: []jobs.CheckResult{{Name: jobs.CheckBoot, Status: jobs.StatusPass, Required: true}}}
	switch {
	case strings.HasPrefix(job.ID, "fail-"):
		r.Verdict, r.FailedCheck, r.Reason = jobs.VerdictFail, jobs.CheckSSH, "no SSH banner"
		r.Checks = append(r.Checks, jobs.CheckResult{Name: jobs.CheckSSH, Status: jobs.StatusFail, Required: true, Reason: "no SSH banner"})
		r.ConsoleTail = "Kernel panic - not syncing"
	case strings.HasPrefix(job.ID, "error-"):
		r.Verdict, r.Reason = jobs.VerdictError, "image URL not reachable"
	case strings.HasPrefix(job.ID, "slow-"):
		<-ctx.Done()
		r.Verdict, r.Reason, r.Retryable = jobs.VerdictError, "cancelled", true
	default:
		r.Verdict = jobs.VerdictPass
	}
	progress(jobs.Progress{Stage: "boot", Event: "done"})
	return r
}

func startWorker(t *testing.T) string {
	t.Helper()
	url := queuetest.Server(t)
	d, err := daemon.New(daemon.Config{
		NATS: queue.ConnectOptions{URLs: []string{url}}, WorkerID: "cmd-test", Concurrency: 2,
		FetchWait: 200 * time.Millisecond, GracePeriod: 100 * time.Millisecond, MemoryReserveMiB: 1,
	}, verdictRunner{}, daemon.WithLogger(slog.New(slog.DiscardHandler)), daemon.WithMemInfo(daemon.FixedMemInfo(1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	return url
}

func writeJob(t *testing.T, id string) string {
	t.Helper()
	j := jobs.Job{Version: jobs.Version, ID: id,
		Image: jobs.ImageSpec{Source: "/srv/" + id + ".qcow2", Format: "qcow2", Checksum: "sha256:" + strings.Repeat("1", 64)},
		Guest: jobs.GuestSpec{User: "debian"}, Publish: jobs.Publication{Name: "img-" + id}}
	data, _ := json.Marshal(j)
	path := filepath.Join(t.TempDir(), id+".json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCmd(t *testing.T, f func(context.Context, []string, Env) int, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code := f(context.Background(), args, env)
	return code, out.String(), errb.String()
}

func TestSubmitWaitExitCodes(t *testing.T) {
	url := startWorker(t)
	for _, tc := range []struct {
		id   string
		code int
		want string
	}{
		{"pass-1", exitPass, "PASS"},
		{"fail-1", exitFail, "no SSH banner"},
		{"error-1", exitError, "ERROR"},
	} {
		code, out, errOut := runCmd(t, cmdSubmit, writeJob(t, tc.id), "--wait", "--nats", url, "--timeout", "20s")
		if code != tc.code || !strings.Contains(out, "accepted") || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", tc.id, code, tc.code, out, errOut)
		}
		if !strings.Contains(errOut, "boot") {
			t.Errorf("%s: no progress lines on stderr: %q", tc.id, errOut)
		}
	}
	// Submitting again: a duplicate, answered at once with the stored verdict.
	code, out, _ := runCmd(t, cmdSubmit, writeJob(t, "fail-1"), "--nats", url, "--wait", "--timeout", "5s")
	if code != exitFail || !strings.Contains(out, "already submitted") {
		t.Errorf("resubmission: exit %d\n%s", code, out)
	}
}

func TestSubmitTimeoutJSONAndJUnit(t *testing.T) {
	url := startWorker(t)
	code, out, errOut := runCmd(t, cmdSubmit, "--nats", url, "--wait", "--timeout", "500ms", "--json", writeJob(t, "slow-1"))
	if code != exitTimeout || !strings.Contains(errOut, "no verdict") {
		t.Errorf("timeout: exit %d\n%s\n%s", code, out, errOut)
	}
	var o submitOutput
	if err := json.Unmarshal([]byte(out), &o); err != nil || !o.TimedOut || o.Acceptance.JobID != "slow-1" {
		t.Errorf("json %q: %v", out, err)
	}

	junit := filepath.Join(t.TempDir(), "report.xml")
	code, out, _ = runCmd(t, cmdSubmit, "--nats", url, "--wait", "--json", "--junit", junit, writeJob(t, "fail-2"))
	if code != exitFail {
		t.Fatalf("exit %d: %s", code, out)
	}
	if err := json.Unmarshal([]byte(out), &o); err != nil || o.Result == nil || o.Result.Verdict != jobs.VerdictFail {
		t.Errorf("json %q: %v", out, err)
	}
	data, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Body    string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Failures != 1 || len(doc.Suites) != 1 || len(doc.Suites[0].Cases) != 2 {
		t.Fatalf("junit %s", data)
	}
	f := doc.Suites[0].Cases[1].Failure
	if f == nil || f.Message != "no SSH banner" || !strings.Contains(f.Body, "Kernel panic") {
		t.Errorf("junit failure %+v", f)
	}
}

func TestSubmitRejectsInvalidJobLocally(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(path, []byte(`{"version":1,"id":"x","imagee":{}}`), 0o600)
	code, _, errOut := runCmd(t, cmdSubmit, "--nats", "nats://127.0.0.1:1", path)
	if code != exitError || !strings.Contains(errOut, "imagee: unknown field") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

func TestStatusShowsLatestVerdicts(t *testing.T) {
	url := startWorker(t)
	for _, id := range []string{"pass-s", "fail-s"} {
		if code, out, errOut := runCmd(t, cmdSubmit, "--nats", url, "--wait", writeJob(t, id)); code == exitError {
			t.Fatalf("%s: %s %s", id, out, errOut)
		}
	}
	code, out, _ := runCmd(t, cmdStatus, "--nats", url)
	if code != 0 || !strings.Contains(out, "img-pass-s") || !strings.Contains(out, "img-fail-s") || !strings.Contains(out, "ssh: no SSH banner") {
		t.Errorf("status table: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "PUBLISHED IMAGE") {
		t.Errorf("status table shows a publication before any:\n%s", out)
	}
	// A family the publisher put into Glance gets its own line.
	nc, err := queue.Connect(queue.ConnectOptions{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	q, err := queue.Open(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	src, pub := strings.Repeat("5", 128), strings.Repeat("a", 128)
	if err := q.PutPublished(context.Background(), jobs.Published{Family: "debian-12", Name: "Debian 12 - Latest",
		ImageID: "0b7c9f0e-6d1e-4c3a-9a53-2f1d3c1e8a10", Release: "20261130", JobID: "pass-s", PublishedAt: at,
		Cloud: "east", Region: "RegionOne", SourceHash: src, OSHashValue: pub}); err != nil {
		t.Fatal(err)
	}
	// The same job, refused in another cloud: shown with its reason and how to retry.
	if err := q.PutPublication(context.Background(), jobs.PublicationRecord{JobID: "pass-s", Family: "debian-12", Cloud: "west",
		Region: "RegionTwo", State: jobs.PublicationRefused, Reason: "cloud west (region RegionTwo): Glance sha512 os_hash_value of image x is b", Attempts: 1, UpdatedAt: at}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, cmdStatus, "--nats", url)
	for _, want := range []string{
		`(?m)^debian-12 +east \(RegionOne\) +0b7c9f0e-6d1e-4c3a-9a53-2f1d3c1e8a10 +Debian 12 - Latest +20261130 +pass-s +2026-11-30T12:00:00Z`,
		`(?m)^debian-12 +east +` + src + ` +` + pub,
		`(?m)^pass-s +west \(RegionTwo\) +refused +1 +2026-11-30T12:00:00Z +- +- +cloud west \(region RegionTwo\): Glance sha512`,
		`(?m)^a refused publication is tried again by: imagevet publish --job JOB-ID`,
	} {
		if code != 0 || !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("status table without %s: exit %d\n%s", want, code, out)
		}
	}
	// status --json says at least what the tables say.
	code, out, _ = runCmd(t, cmdStatus, "--nats", url, "--json")
	var all overviewStatus
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all.Images) != 2 || code != 0 ||
		len(all.Published) != 1 || all.Published[0].ImageID != "0b7c9f0e-6d1e-4c3a-9a53-2f1d3c1e8a10" || all.Published[0].SourceHash != src ||
		len(all.Publications) != 1 || all.Publications[0].State != jobs.PublicationRefused || all.Families == nil {
		t.Errorf("status --json: %v %q", err, out)
	}
	code, out, _ = runCmd(t, cmdStatus, "--nats", url, "--json", "img-pass-s")
	var one resultStatus
	if err := json.Unmarshal([]byte(out), &one); err != nil || code != exitPass || one.JobID != "pass-s" ||
		len(one.Publications) != 1 || one.Publications[0].Cloud != "west" {
		t.Errorf("status --json IMAGE: exit %d, %v %q", code, err, out)
	}
	if code, _, _ := runCmd(t, cmdStatus, "--nats", url, "img-fail-s"); code != exitFail {
		t.Errorf("status IMAGE of a failed image: exit %d", code)
	}
	if code, _, _ := runCmd(t, cmdStatus, "--nats", url, "img-pass-s"); code != exitPass {
		t.Errorf("status IMAGE of a passed image: exit %d", code)
	}
	if code, _, _ := runCmd(t, cmdStatus, "--nats", url, "never-seen"); code != exitNoVerdict {
		t.Errorf("status of an unknown image: exit %d", code)
	}
	if code, out, _ := runCmd(t, cmdStatus, "--nats", url, "--job", "fail-s", "--json"); code != exitFail || !strings.Contains(out, `"verdict": "fail"`) {
		t.Errorf("status --job: exit %d %s", code, out)
	}
}

func TestWorkerFlagErrors(t *testing.T) {
	env := Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: func(k string) string {
		return map[string]string{"IMAGEVET_CONCURRENCY": "many"}[k]
	}}
	if code := cmdWorker(context.Background(), nil, env); code != exitError ||
		!strings.Contains(env.Stderr.(*bytes.Buffer).String(), "IMAGEVET_CONCURRENCY") {
		t.Errorf("bad env accepted: exit %d %s", code, env.Stderr)
	}
}

// A queue setting given as zero or less is refused by name (leaving it out keeps
// the default), for queue setup and a first worker alike, by flag or variable.
func TestQueueSettingsGivenAsZeroAreRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"setup", "--ack-wait", "0s"}, nil, "--ack-wait (IMAGEVET_ACK_WAIT): must be positive"},
		{[]string{"setup", "--replicas", "0"}, nil, "--replicas (IMAGEVET_REPLICAS): must be positive"},
		{[]string{"setup"}, map[string]string{"IMAGEVET_MAX_DELIVER": "0"}, "--max-deliver (IMAGEVET_MAX_DELIVER): must be positive"},
	} {
		var errb bytes.Buffer
		env := Env{Stdout: &bytes.Buffer{}, Stderr: &errb, Getenv: func(k string) string { return tc.env[k] }}
		if code := cmdQueue(context.Background(), tc.args, env); code != exitError || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("queue %v %v: exit %d, stderr %q, want %q", tc.args, tc.env, code, errb.String(), tc.want)
		}
	}
	var errb bytes.Buffer
	env := Env{Stdout: &bytes.Buffer{}, Stderr: &errb, Getenv: func(string) string { return "" }}
	if code := cmdWorker(context.Background(), []string{"--results-max-age", "0s"}, env); code != exitError ||
		!strings.Contains(errb.String(), "--results-max-age (IMAGEVET_RESULTS_MAX_AGE): must be positive") {
		t.Errorf("worker --results-max-age 0s: exit %d, stderr %q", code, errb.String())
	}
}
