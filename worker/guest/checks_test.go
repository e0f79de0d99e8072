package guest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/worker/guest/metadata"

	"github.com/imagevet/imagevet/cloudinit"
)

func TestCheckHostname(t *testing.T) {
	for _, tc := range []struct {
		out    string
		err    error
		want   string
		status Status
	}{
		{"vet-job-1\n", nil, "vet-job-1", StatusPass},
		{"vet-job-1\n", nil, "vet-job-1.example.org", StatusPass},
		{"VET-JOB-1.example.org\n", nil, "vet-job-1", StatusPass},
		{"localhost\n", nil, "vet-job-1", StatusFail},
		{"", nil, "vet-job-1", StatusFail},
		{"", errConnLost, "vet-job-1", StatusError},
	} {
		f := &fakeRunner{steps: []step{{match: "hostname", out: ok(tc.out), err: tc.err}}}
		res := CheckHostname(context.Background(), f, tc.want)
		if res.Status != tc.status || res.Name != NameHostname {
			t.Errorf("hostname %q want %q: got %s %q", tc.out, tc.want, res.Status, res.Reason)
		}
	}
}

func TestRunCommands(t *testing.T) {
	f := &fakeRunner{steps: []step{
		{match: "uname -s", out: ok("Linux\n")},
		{match: "systemctl is-system-running", out: CommandResult{Stdout: "degraded\n", ExitCode: 1}},
		{match: "cat /etc/os-release", out: ok("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\n")},
		{match: "false", out: CommandResult{ExitCode: 1, Stderr: "boom\nmore"}},
		{match: "sleep", delay: time.Minute},
		{match: "lost", err: errConnLost},
	}}
	ctx := context.Background()
	res := RunCommands(ctx, f, []Command{
		{Run: "uname -s", ExpectOutput: "Linux"},
		{Run: "systemctl is-system-running", ExpectExit: 1, ExpectOutput: "/^(degraded|running)$/"},
		{Run: "cat /etc/os-release", ExpectOutput: `/^VERSION_ID="12"$/`},
	})
	if res.Status != StatusPass || res.Name != NameCommands {
		t.Fatalf("got %s %q\n%s", res.Status, res.Reason, res.Detail)
	}
	if !strings.Contains(res.Detail, "$ uname -s\nLinux\n[exit 0") {
		t.Errorf("detail:\n%s", res.Detail)
	}

	for _, tc := range []struct {
		cmds   []Command
		status Status
		reason string
	}{
		{[]Command{{Run: "uname -s", ExpectOutput: "BSD"}}, StatusFail, `command 1 (uname -s) output does not match "BSD" (got "Linux")`},
		{[]Command{{Run: "uname -s"}, {Run: "false"}}, StatusFail, `command 2 (false) exited 1, want 0; stderr ends "boom ⏎ more"`},
		{[]Command{{Run: "sleep 100", Timeout: 50 * time.Millisecond}}, StatusFail, "command 1 (sleep 100) did not finish in time"},
		{[]Command{{Run: "lost"}}, StatusError, "command 1 (lost) could not run: ssh: connection lost"},
		{[]Command{{Run: "uname -s", ExpectOutput: "/(/"}}, StatusError, ""},
		{nil, StatusSkip, "the job has no commands"},
	} {
		res := RunCommands(ctx, f, tc.cmds)
		if res.Status != tc.status || (tc.reason != "" && res.Reason != tc.reason) {
			t.Errorf("%+v: got %s %q, want %s %q", tc.cmds, res.Status, res.Reason, tc.status, tc.reason)
		}
	}
	if res := RunCommands(ctx, f, []Command{{Run: "lost"}}); !errors.Is(res.Err, errConnLost) {
		t.Errorf("Err = %v", res.Err)
	}
}

func TestCheckMetadataParsing(t *testing.T) {
	const body = `{"uuid": "iid-7", "hostname": "vet-7"}`
	for _, tc := range []struct {
		name   string
		out    string
		status Status
		reason string
	}{
		{"curl", "@@tool\ncurl\n@@body\n" + body + "\n", StatusPass, "the guest fetched /openstack/latest/meta_data.json with curl"},
		{"fallback", "@@fail curl: curl: (7) Failed to connect to 169.254.169.254 port 80: Connection refused\n@@tool\npython3\n@@body\n" + body + "\n", StatusPass, "the guest fetched /openstack/latest/meta_data.json with python3"},
		{"bash", "@@tool\nbash-dev-tcp\n@@body\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + body + "\n", StatusPass, "the guest fetched /openstack/latest/meta_data.json with bash-dev-tcp"},
		{"bash 404", "@@tool\nbash-dev-tcp\n@@body\nHTTP/1.1 404 Not Found\r\n\r\nnope\n", StatusFail, `metadata service answered "HTTP/1.1 404 Not Found" to http://169.254.169.254/openstack/latest/meta_data.json (via bash /dev/tcp)`},
		{"other instance", "@@tool\nwget\n@@body\n{\"uuid\": \"someone-else\"}\n", StatusFail, `the metadata service answered without this job's instance id "iid-7" (fetched with wget)`},
		{"all fail", "@@fail curl: curl: (28) Connection timed out after 15001 milliseconds\n@@fail wget: wget: download timed out\n", StatusFail,
			"the guest could not fetch http://169.254.169.254/openstack/latest/meta_data.json: curl: curl: (28) Connection timed out after 15001 milliseconds; wget: wget: download timed out"},
		{"no client", "@@none\n", StatusSkip, ""},
	} {
		f := &fakeRunner{steps: []step{{match: "@@tool", out: CommandResult{Stdout: tc.out, ExitCode: 1}}}}
		res := CheckMetadata(context.Background(), f, DefaultMetadataURL, "iid-7")
		if res.Status != tc.status || (tc.reason != "" && res.Reason != tc.reason) {
			t.Errorf("%s: got %s %q, want %s %q", tc.name, res.Status, res.Reason, tc.status, tc.reason)
		}
	}
}

// localRunner runs commands with the host's /bin/sh and a PATH holding only the
// named tools, standing in for guests with different HTTP clients.
type localRunner struct{ path string }

func newLocalRunner(t *testing.T, tools ...string) localRunner {
	dir := t.TempDir()
	for _, tool := range append([]string{"sh"}, tools...) {
		p, err := exec.LookPath(tool)
		if _, serr := os.Stat("/usr/bin/" + tool); serr == nil {
			p, err = "/usr/bin/"+tool, nil // the system's, not a version manager's shim
		}
		if err != nil {
			t.Skipf("host has no %s: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return localRunner{path: dir}
}

func (l localRunner) Run(ctx context.Context, cmd string) (CommandResult, error) {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Env = []string{"PATH=" + l.path, "HOME=/nonexistent"}
	var stdout, stderr strings.Builder
	c.Stdout, c.Stderr = &stdout, &stderr
	start := time.Now()
	err := c.Run()
	res := CommandResult{Stdout: stdout.String(), Stderr: stderr.String(), Duration: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		err = nil
	}
	return res, err
}

// TestCheckMetadataScript runs the real fetch script with /bin/sh against a real
// metadata server on 127.0.0.1, once per HTTP client a guest may have.
func TestCheckMetadataScript(t *testing.T) {
	srv, err := metadata.Start(metadata.Config{Seed: cloudinit.Spec{InstanceID: "iid-script", Hostname: "vet-script", Keys: mustKeys(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	url := srv.URL() + "/openstack/latest/meta_data.json"
	for _, tc := range []struct {
		tools []string
		want  string
	}{
		{[]string{"curl"}, "curl"},
		{[]string{"wget"}, "wget"},
		{[]string{"busybox"}, "busybox-wget"},
		{[]string{"python3"}, "python3"},
		{[]string{"bash"}, "bash-dev-tcp"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			r := newLocalRunner(t, tc.tools...)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res := CheckMetadata(ctx, r, url, "iid-script")
			if res.Status != StatusPass || !strings.HasSuffix(res.Reason, "with "+tc.want) {
				t.Errorf("got %s %q\n%s", res.Status, res.Reason, res.Detail)
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		res := CheckMetadata(context.Background(), newLocalRunner(t), url, "iid-script")
		if res.Status != StatusSkip {
			t.Errorf("got %s %q", res.Status, res.Reason)
		}
	})
	t.Run("404 then fallback", func(t *testing.T) {
		r := newLocalRunner(t, "python3", "bash")
		res := CheckMetadata(context.Background(), r, srv.URL()+"/openstack/latest/nope", "iid-script")
		if res.Status != StatusFail || !strings.Contains(res.Reason, "404 Not Found") || !strings.Contains(res.Detail, "python3: urllib.error.HTTPError: HTTP Error 404") {
			t.Errorf("got %s %q\n%s", res.Status, res.Reason, res.Detail)
		}
	})
	if n := len(srv.Requests()); n < 5 {
		t.Errorf("server saw %d requests", n)
	}
}

// TestCloudInitScriptsParse checks the shell the cloud-init check sends and, on a
// host with cloud-init, that the report parses from its real output.
func TestCloudInitScriptsParse(t *testing.T) {
	poll := pollScript(10*time.Millisecond, 30*time.Millisecond)
	for _, s := range []string{poll, cloudInitReport, fetchScriptFor(t, DefaultMetadataURL)} {
		if out, err := exec.Command("/bin/sh", "-n", "-c", s).CombinedOutput(); err != nil {
			t.Errorf("sh -n: %v: %s\n%s", err, out, s)
		}
		if p, err := exec.LookPath("busybox"); err == nil {
			if out, err := exec.Command(p, "sh", "-n", "-c", s).CombinedOutput(); err != nil {
				t.Errorf("busybox sh -n: %v: %s", err, out)
			}
		}
	}
	// The poll waits in the guest for its rounds, then answers one word.
	shells := [][]string{{"/bin/sh"}}
	if p, err := exec.LookPath("busybox"); err == nil {
		shells = append(shells, []string{p, "sh"})
	}
	for _, sh := range shells {
		out, err := exec.Command(sh[0], append(sh[1:], "-c", poll)...).Output()
		first, rest, _ := strings.Cut(string(out), "\n")
		got := strings.TrimSpace(first)
		if err != nil || (got != "waiting" && got != "finished" && got != "disabled") {
			t.Errorf("%v poll: %v, answered %q", sh, err, got)
		}
		// Waiting is one word; an end is followed by the whole report.
		if (got == "waiting") != (strings.TrimSpace(rest) == "") || (got != "waiting" && !strings.Contains(rest, "\n"+reportEnd+"\n")) {
			t.Errorf("%v poll answered %q then %q", sh, got, rest)
		}
	}
	if _, err := exec.LookPath("cloud-init"); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", cloudInitReport).Output()
	if err != nil {
		t.Fatalf("report script: %v", err)
	}
	st := parseCloudInitReport(string(out))
	if st.status == "" || st.hostname == "" {
		t.Errorf("host report parsed to %+v from:\n%s", st, out)
	}
}

// A failed command's reason quotes the end of its output, where the cause usually is
// (bounded, and the long command line shortened so the quote fits the one-line
// reason); the detail keeps every line.
func TestRunCommandsReasonQuotesTheLastLines(t *testing.T) {
	apt := "Reading package lists...\nBuilding dependency tree...\nReading state information...\n" +
		"E: Unable to locate package nosuchpkg\nE: Couldn't find any package by glob 'nosuchpkg'\n"
	long := "sudo -n apt-get install -y --no-install-recommends nosuchpkg another-package yet-another-package"
	f := &fakeRunner{steps: []step{
		{match: "apt-get", out: CommandResult{ExitCode: 100, Stdout: apt}},
		{match: "noisy", out: CommandResult{ExitCode: 2, Stderr: strings.Repeat("warning: something long and boring about the weather, once again\n", 40) + "fatal: the real cause\n"}},
		{match: "cat /etc/os-release", out: ok("NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"11\"\nID=debian\n")},
	}}
	ctx := context.Background()
	res := RunCommands(ctx, f, []Command{{Run: long}})
	if res.Status != StatusFail || !strings.Contains(res.Reason, "E: Unable to locate package nosuchpkg ⏎ E: Couldn't find any package by glob") ||
		!strings.Contains(res.Reason, "exited 100, want 0; stdout ends") || strings.Contains(res.Reason, long) {
		t.Errorf("got %s %q; want the last lines of its output quoted and the command shortened", res.Status, res.Reason)
	}
	if len(res.Reason) > 300 {
		t.Errorf("reason of %d bytes: a result keeps 300", len(res.Reason))
	}
	if !strings.Contains(res.Detail, "Reading package lists...\nBuilding dependency tree") {
		t.Errorf("detail lost output:\n%s", res.Detail)
	}
	res = RunCommands(ctx, f, []Command{{Run: "noisy"}})
	if !strings.Contains(res.Reason, `fatal: the real cause"`) || !strings.Contains(res.Reason, "…") || len(res.Reason) > 300 {
		t.Errorf("got %q; want the last line, the front cut", res.Reason)
	}
	if strings.Count(res.Detail, "something long and boring") != 40 {
		t.Errorf("detail does not keep all of the output")
	}
	res = RunCommands(ctx, f, []Command{{Run: "cat /etc/os-release", ExpectOutput: `/^VERSION_ID="12"$/`}})
	if !strings.Contains(res.Reason, `VERSION_ID=\"11\" ⏎ ID=debian`) {
		t.Errorf("got %q; want the end of the output it got", res.Reason)
	}
}

// mustKeys makes a job's key set, for a seed.
func mustKeys(t *testing.T) *cloudinit.Keys {
	t.Helper()
	k, err := cloudinit.NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
