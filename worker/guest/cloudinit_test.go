package guest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

const (
	presenceCmd = "command -v cloud-init"
	pollCmd     = "result.json ]; then echo finished"
	reportCmd   = "echo @@status"
)

// reportRuns counts the report's own runs (every poll carries one too).
func reportRuns(f *fakeRunner) int { return f.count(reportCmd) - f.count(pollCmd) }

func ciRunner(report string, polls ...string) *fakeRunner {
	f := &fakeRunner{}
	f.steps = append(f.steps, step{match: presenceCmd, out: ok("present\n")})
	for _, p := range polls {
		f.steps = append(f.steps, step{match: pollCmd, once: true, out: ok(p + "\n")})
	}
	f.steps = append(f.steps, step{match: reportCmd, out: ok(report)})
	return f
}

func TestCloudInit224Done(t *testing.T) {
	f := ciRunner(testdata(t, "ci-22.4-done.txt"), "waiting", "waiting", "finished")
	res := CheckCloudInit(context.Background(), f, CloudInitWant{InstanceID: "iid-job-42", Hostname: "vet-job-42", Datasource: "nocloud", PollInterval: time.Millisecond})
	if res.Status != StatusPass {
		t.Fatalf("status %s: %s\n%s", res.Status, res.Reason, res.Detail)
	}
	if res.Reason != "cloud-init finished from DataSourceNoCloud" {
		t.Errorf("reason = %q", res.Reason)
	}
	if n := f.count(pollCmd); n != 3 {
		t.Errorf("polled %d times, want 3", n)
	}
	for _, want := range []string{"status: done", "instance-id: iid-job-42", "util.py[WARNING]"} {
		if !strings.Contains(res.Detail, want) {
			t.Errorf("detail lacks %q:\n%s", want, res.Detail)
		}
	}
	// Every command runs under sh whatever the login shell.
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "sh -c '") {
			t.Errorf("command not wrapped in sh -c: %q", c)
		}
	}
}

// The poll that sees cloud-init's end carries the report in the same session: no
// second round trip after the end.
func TestCloudInitReportWithPoll(t *testing.T) {
	report := testdata(t, "ci-22.4-done.txt")
	f := &fakeRunner{steps: []step{
		{match: presenceCmd, out: ok("present\n")},
		{match: pollCmd, once: true, out: ok("waiting\n")},
		{match: pollCmd, once: true, out: ok("finished\n" + report)},
	}}
	res := CheckCloudInit(context.Background(), f, CloudInitWant{InstanceID: "iid-job-42", Hostname: "vet-job-42", Datasource: "nocloud", PollInterval: time.Millisecond})
	if res.Status != StatusPass || res.Reason != "cloud-init finished from DataSourceNoCloud" {
		t.Fatalf("got %s %q\n%s", res.Status, res.Reason, res.Detail)
	}
	if n := len(f.calls); n != 3 {
		t.Errorf("%d commands, want 3 (presence, two polls): %q", n, f.calls)
	}
	// A poll answer cut before the report's end is not taken for the report.
	f = &fakeRunner{steps: []step{
		{match: presenceCmd, out: ok("present\n")},
		{match: pollCmd, once: true, out: ok("finished\n@@result\n{\"v1\": {\"datasource\": \"DataSourceNoCl")},
		{match: reportCmd, out: ok(report)},
	}}
	res = CheckCloudInit(context.Background(), f, CloudInitWant{Datasource: "nocloud", PollInterval: time.Millisecond})
	if res.Status != StatusPass || reportRuns(f) != 1 {
		t.Errorf("cut answer: got %s %q, %d report runs of its own (want 1)", res.Status, res.Reason, reportRuns(f))
	}
}

func TestCloudInitVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       CloudInitWant
		status     Status
		reason     string
	}{
		{"22.4 error", "ci-22.4-error.txt", CloudInitWant{InstanceID: "iid-job-42"}, StatusFail,
			"cloud-init reported an error: ('ssh', KeyError('ed25519_private'))"},
		{"24.1 degraded warning", "ci-24.1-degraded.txt", CloudInitWant{InstanceID: "0a1b2c3d-job-43", Hostname: "vet-job-43", Datasource: "ConfigDrive"}, StatusFail,
			"cloud-init finished degraded: WARNING: Invalid cloud-config provided: Please run 'sudo cloud-init schema --system' to see the schema errors."},
		{"24.1 deprecations only", "ci-24.1-deprecated.txt", CloudInitWant{InstanceID: "iid-job-44", Hostname: "vet-job-44", Datasource: "DataSourceNoCloud"}, StatusPass,
			"cloud-init finished from DataSourceNoCloud (1 deprecation notices)"},
		{"24.1 deprecations strict", "ci-24.1-deprecated.txt", CloudInitWant{FailOnDeprecated: true}, StatusFail,
			"cloud-init finished degraded: DEPRECATED: Deprecated cloud-config provided: chpasswd.list: Deprecated in version 22.2. Use ``users`` instead."},
		{"wrong datasource", "ci-22.4-done.txt", CloudInitWant{Datasource: "configdrive"}, StatusFail,
			"cloud-init used DataSourceNoCloud, want configdrive"},
		{"wrong instance id", "ci-22.4-done.txt", CloudInitWant{InstanceID: "iid-other"}, StatusFail,
			`instance id is "iid-job-42", want "iid-other": cloud-init did not apply this job's seed`},
		{"wrong hostname", "ci-22.4-done.txt", CloudInitWant{Hostname: "vet-other"}, StatusFail,
			`hostname is "vet-job-42", want "vet-other": cloud-init did not set it`},
		{"fqdn hostname", "ci-24.1-deprecated.txt", CloudInitWant{Hostname: "vet-job-44.example.org"}, StatusPass, ""},
		{"disabled", "ci-22.4-disabled.txt", CloudInitWant{Datasource: "NoCloud"}, StatusFail,
			"cloud-init is disabled (disabled-by-generator): it did not detect the NoCloud datasource"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			poll := "finished"
			if strings.Contains(tc.file, "disabled") {
				poll = "disabled"
			}
			res := CheckCloudInit(context.Background(), ciRunner(testdata(t, tc.file), poll), tc.want)
			if res.Status != tc.status || (tc.reason != "" && res.Reason != tc.reason) {
				t.Errorf("got %s %q\nwant %s %q", res.Status, res.Reason, tc.status, tc.reason)
			}
			if strings.Contains(res.Reason, "\n") {
				t.Errorf("reason has several lines: %q", res.Reason)
			}
		})
	}
}

func TestCloudInitAbsent(t *testing.T) {
	f := &fakeRunner{steps: []step{{match: presenceCmd, out: ok("absent\n")}}}
	res := CheckCloudInit(context.Background(), f, CloudInitWant{})
	if res.Status != StatusSkip || res.Reason != "image has no cloud-init" {
		t.Errorf("got %s %q", res.Status, res.Reason)
	}
}

// A cloud-init that never finishes fails at the deadline with the stage it is
// stuck in, read after the deadline with a short context of its own.
func TestCloudInitDeadline(t *testing.T) {
	f := ciRunner(testdata(t, "ci-running.txt"))
	f.steps = append(f.steps[:1], append([]step{{match: pollCmd, out: ok("waiting\n")}}, f.steps[1:]...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := CheckCloudInit(ctx, f, CloudInitWant{PollInterval: 50 * time.Millisecond})
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v with a 300ms deadline", d)
	}
	if res.Status != StatusFail || res.Reason != "cloud-init did not finish before the deadline (running, in stage modules-config)" {
		t.Errorf("got %s %q", res.Status, res.Reason)
	}
	if reportRuns(f) != 1 {
		t.Error("no status report after the deadline")
	}
}

func TestCloudInitConnectionLost(t *testing.T) {
	f := &fakeRunner{steps: []step{{match: presenceCmd, out: ok("present\n")}, {match: pollCmd, err: errConnLost}}}
	res := CheckCloudInit(context.Background(), f, CloudInitWant{})
	if res.Status != StatusError || !errors.Is(res.Err, errConnLost) {
		t.Errorf("got %s %q err %v", res.Status, res.Reason, res.Err)
	}
}

func TestNormalizeDatasource(t *testing.T) {
	for in, want := range map[string]string{
		"DataSourceNoCloud [seed=/dev/sr0][dsmode=net]":      "nocloud",
		"DataSourceConfigDrive [net,ver=2][source=/dev/sr0]": "configdrive",
		"NoCloud":          "nocloud",
		"DataSourceNone":   "none",
		"OpenStackLocal  ": "openstacklocal",
	} {
		if got := normalizeDatasource(in); got != want {
			t.Errorf("normalizeDatasource(%q) = %q, want %q", in, got, want)
		}
	}
}

// Once result.json exists the report leaves out cloud-init status (seconds of
// Python under emulation): the verdicts are the same from the files alone.
func TestCloudInitVerdictsWithoutStatus(t *testing.T) {
	withoutStatus := func(report string) string {
		_, rest, ok := strings.Cut(report, "@@result\n")
		if !ok {
			t.Fatal("report without a result section")
		}
		return "@@result\n" + rest
	}
	for _, tc := range []struct {
		file   string
		want   CloudInitWant
		status Status
		reason string
	}{
		{"ci-22.4-done.txt", CloudInitWant{InstanceID: "iid-job-42", Hostname: "vet-job-42", Datasource: "nocloud"}, StatusPass, "cloud-init finished from DataSourceNoCloud"},
		{"ci-22.4-error.txt", CloudInitWant{InstanceID: "iid-job-42"}, StatusFail, "cloud-init reported an error: ('ssh', KeyError('ed25519_private'))"},
		{"ci-24.1-degraded.txt", CloudInitWant{}, StatusFail, "cloud-init finished degraded: WARNING: Invalid cloud-config provided: Please run 'sudo cloud-init schema --system' to see the schema errors."},
	} {
		res := CheckCloudInit(context.Background(), ciRunner(withoutStatus(testdata(t, tc.file)), "finished"), tc.want)
		if res.Status != tc.status || res.Reason != tc.reason {
			t.Errorf("%s: got %s %q\nwant %s %q", tc.file, res.Status, res.Reason, tc.status, tc.reason)
		}
		if want := map[Status]string{StatusPass: "status: done", StatusFail: "status: "}[tc.status]; !strings.HasPrefix(res.Detail, want) {
			t.Errorf("%s: detail does not start with %q:\n%s", tc.file, want, res.Detail)
		}
	}
}

// The verdict on a report, from the states the report files above do not show:
// the order of the failures (a disabled cloud-init before an unfinished one, the
// run before the seed) and each reason.
func TestJudgeCloudInitStates(t *testing.T) {
	finished := func(st ciState) ciState { st.result = &ciResult{}; return st }
	ds := "DataSourceNoCloud [seed=/dev/sr0]"
	for _, tc := range []struct {
		name     string
		st       ciState
		want     CloudInitWant
		deadline bool
		status   Status
		reason   string
	}{
		{"disabled by its boot code before it finished", ciState{status: "running", bootCode: "disabled-by-marker-file"}, CloudInitWant{}, true, StatusFail,
			"cloud-init is disabled (disabled-by-marker-file): it did not detect the any datasource"},
		{"a finished run is not disabled by its boot code", finished(ciState{status: "done", bootCode: "disabled-by-marker-file", datasource: ds}), CloudInitWant{}, false, StatusPass,
			"cloud-init finished from DataSourceNoCloud"},
		{"no status at the deadline", ciState{}, CloudInitWant{}, true, StatusFail,
			"cloud-init did not finish before the deadline (no status)"},
		{"not finished before the deadline", ciState{status: "running", stage: "init"}, CloudInitWant{}, false, StatusFail,
			"cloud-init reports it is not finished (running, in stage init)"},
		{"status error without errors", ciState{status: "error"}, CloudInitWant{}, false, StatusFail,
			"cloud-init reported an error: status: error"},
		{"an error before a wrong seed", finished(ciState{status: "done", errors: []string{"boom\nat line 2"}}), CloudInitWant{Datasource: "nocloud"}, false, StatusFail,
			"cloud-init reported an error: boom"},
		{"no datasource", finished(ciState{status: "done", datasource: "DataSourceNone"}), CloudInitWant{Datasource: "nocloud"}, false, StatusFail,
			"cloud-init found no datasource (DataSourceNone), want nocloud"},
		{"no instance id", finished(ciState{status: "done", datasource: ds}), CloudInitWant{InstanceID: "iid-1"}, false, StatusFail,
			"cloud-init recorded no instance id"},
		{"a wrong seed before degraded", finished(ciState{status: "done", datasource: ds, hostname: "other", recoverable: map[string][]string{"WARNING": {"w"}}}), CloudInitWant{Hostname: "vet-1"}, false, StatusFail,
			`hostname is "other", want "vet-1": cloud-init did not set it`},
		{"degraded without recoverable errors", finished(ciState{status: "done", extended: "degraded done", datasource: ds}), CloudInitWant{}, false, StatusFail,
			"cloud-init finished degraded: degraded: degraded done"},
		{"the most severe level first", finished(ciState{status: "done", datasource: ds, recoverable: map[string][]string{"WARNING": {"w"}, "CRITICAL": {"c\nmore"}, "NOTICE": {"n"}}}), CloudInitWant{}, false, StatusFail,
			"cloud-init finished degraded: CRITICAL: c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := func(s Status, reason, detail string) CheckResult {
				return CheckResult{Status: s, Reason: reason, Detail: detail}
			}
			res := judgeCloudInit(tc.st, tc.want, tc.deadline, done)
			if res.Status != tc.status || res.Reason != tc.reason {
				t.Errorf("got %s %q\nwant %s %q", res.Status, res.Reason, tc.status, tc.reason)
			}
		})
	}
}
