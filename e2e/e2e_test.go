// Package e2e runs imagevet as users deploy it: Debian's nats-server as its own
// process, the imagevet binary as worker and as submitter, real libvirtd and qemu
// (TCG) booting the fixture images. Enabled with IMAGEVET_E2E=1 (or
// IMAGEVET_INTEGRATION=1, as `make test` sets); IMAGEVET_BIN names a built binary
// (default: built here), IMAGEVET_FIXTURES the fixture directory.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm"

	"github.com/imagevet/imagevet/internal/testenv"

	"github.com/imagevet/imagevet/queue"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func enabled(t *testing.T) {
	t.Helper()
	if os.Getenv("IMAGEVET_E2E") != "1" && os.Getenv("IMAGEVET_INTEGRATION") != "1" {
		t.Skip("end-to-end test: set IMAGEVET_E2E=1 (needs nats-server, libvirtd, qemu and the fixtures)")
	}
	if testing.Short() {
		t.Skip("end-to-end test: not in -short mode")
	}
}

// besideOthers lets a test run beside one other (go test's -parallel, GOMAXPROCS by
// default): every test that boots tiny guests with its own NATS server(s), worker
// ids, machine prefix and state, the fault tests among them (they kill only their
// own workers and nats-servers, and count only their own machines). go test starts
// them only after every sequential test has ended, so the one that restarts
// libvirtd (TestFaultLibvirtdRestartedMidJob, sequential) still runs alone.
func besideOthers(t *testing.T) {
	t.Helper()
	t.Parallel()
}

// missing skips a test whose prerequisites are absent on this machine, or fails it
// under CI, where scripts/setup-host provides all of them.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	testenv.Missing(t, format, args...)
}

// imagevet returns the binary under test, building it once when IMAGEVET_BIN is unset.
func imagevet(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("IMAGEVET_BIN"); bin != "" {
		return bin
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "imagevet-e2e-bin-")
		if buildErr != nil {
			return
		}
		// The libvirt qemu user runs this binary as the metadata proxy.
		os.Chmod(buildDir, 0o755)
		builtBin = filepath.Join(buildDir, "imagevet")
		out, err := exec.Command("go", "build", "-o", builtBin, "../cmd/imagevet").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func fixturesDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("IMAGEVET_FIXTURES")
	if dir == "" {
		dir = "/var/cache/imagevet/fixtures"
	}
	if _, err := os.Stat(filepath.Join(dir, "tiny.qcow2")); err != nil {
		missing(t, "fixture images missing (%v): run scripts/setup-host", err)
	}
	return dir
}

func needLibvirt(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("unix", "/var/run/libvirt/libvirt-sock", time.Second)
	if err != nil {
		missing(t, "libvirtd not reachable: %v (scripts/setup-host starts it)", err)
	}
	c.Close()
}

func freePort(t *testing.T) int { return testenv.FreePort(t) }

// proc is a process this test started; stop ends it by its PID.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
	mu   sync.Mutex
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

type lockedWriter struct{ p *proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.log.Write(b)
}

// start runs a process and registers its end (SIGTERM, then SIGKILL after grace)
// on every path out of the test.
func start(t *testing.T, grace time.Duration, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(args[0], args[1:]...), log: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(grace)
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, tail(p.output(), 6000))
		}
	})
	return p
}

func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
	}
}

// kill ends the process with SIGKILL, as a crashed host would.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// startNATS runs Debian's nats-server with JetStream on a loopback port.
func startNATS(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		missing(t, "nats-server not installed (Debian package nats-server)")
	}
	port := freePort(t)
	start(t, 10*time.Second, "nats-server", bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", t.TempDir())
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, 20*time.Second, "nats-server to listen", func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "nats://" + addr
}

type workerProc struct {
	*proc
	id, metrics string
}

// startWorker runs `imagevet worker` against url with a state directory the libvirt
// qemu user can traverse; every machine with its worker prefix is destroyed at the end.
func startWorker(t *testing.T, url, id string, extra ...string) *workerProc {
	t.Helper()
	return startWorkerIn(t, url, id, stateDir(t), extra...)
}

// e2eTCGFactor scales the sample jobs' deadlines for the e2e workers: two tests run
// side by side (besideOthers), each worker with two guests, so up to four TCG guests
// and a Glance, a browser or a NATS cluster share two cores. It keeps tiny's 20 s
// boot budget at 2 min there; a guest that fails says so on its console long before.
const e2eTCGFactor = "6"

// startWorkerIn is startWorker with a given state directory: a restarted worker keeps
// its state directory, as on a real host.
func startWorkerIn(t *testing.T, url, id, state string, extra ...string) *workerProc {
	t.Helper()
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{imagevet(t), "worker", "--nats", url, "--worker-id", id, "--state-dir", state,
		"--image-root", fixturesDir(t), "--accel", "tcg", "--tcg-factor", e2eTCGFactor, "--concurrency", "2", "--metrics", metrics,
		"--grace", "20s", "--ack-wait", "15s", "--max-deliver", "3", "--memory-reserve", "512",
		// No libguestfs appliance beside each tiny boot: the worker suite inspects.
		"--inspect=false"}
	args = append(args, extra...)
	t.Cleanup(func() { destroyDomains(t, id) })
	w := &workerProc{proc: start(t, 40*time.Second, "worker "+id, args...), id: id, metrics: metrics}
	waitFor(t, 60*time.Second, "worker /healthz", func() bool {
		select {
		case <-w.done:
			t.Fatalf("worker %s exited:\n%s", id, w.output())
		default:
		}
		resp, err := http.Get("http://" + metrics + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return w
}

// stateDir is a fresh directory outside /tmp's private test dirs, traversable by
// libvirt's qemu user, removed at the end.
func stateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "imagevet-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// domains lists libvirt domains whose names start with prefix.
func domains(t *testing.T, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", "-c", "qemu:///system", "list", "--all", "--name").Output()
	if err != nil {
		t.Logf("virsh list: %v", err)
		return nil
	}
	var names []string
	for _, n := range strings.Fields(string(out)) {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	return names
}

// destroyDomains removes machines a worker of this test left behind.
func destroyDomains(t *testing.T, workerID string) {
	for _, n := range domains(t, vm.WorkerPrefix("imagevet-", workerID)) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		exec.CommandContext(ctx, "virsh", "-c", "qemu:///system", "destroy", n).Run()
		exec.CommandContext(ctx, "virsh", "-c", "qemu:///system", "undefine", "--nvram", n).Run()
		cancel()
		t.Logf("destroyed leftover domain %s", n)
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs imagevet with args, killed by PID if it outlives timeout.
func run(t *testing.T, timeout time.Duration, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, imagevet(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), o.String(), e.String()
	}
	if err != nil {
		t.Fatalf("imagevet %v: %v", args, err)
	}
	return 0, o.String(), e.String()
}

// expectation is one entry of fixtures/jobs/expected.json.
type expectation struct {
	Verdict        jobs.Verdict `json:"verdict"`
	FailedCheck    string       `json:"failed_check"`
	ReasonContains string       `json:"reason_contains"`
}

func expected(t *testing.T) map[string]expectation {
	t.Helper()
	data, err := os.ReadFile("../fixtures/jobs/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]expectation
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// jobCopy writes fixtures/jobs/NAME with a new id into a temporary file.
func jobCopy(t *testing.T, name, id string) string { return editedJob(t, name, id, nil) }

// editedJob writes fixtures/jobs/NAME with a new id, changed by edit when not nil,
// into a temporary file.
func editedJob(t *testing.T, name, id string, edit func(*jobs.Job)) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("../fixtures/jobs", name))
	if err != nil {
		t.Fatal(err)
	}
	j, err := jobs.DecodeJob(data)
	if err != nil {
		t.Fatal(err)
	}
	j.ID = id
	if edit != nil {
		edit(&j)
	}
	out, _ := json.Marshal(j)
	path := filepath.Join(t.TempDir(), id+".json")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func resultOf(t *testing.T, stdout string) jobs.Result {
	t.Helper()
	var o struct {
		Acceptance queue.Acceptance `json:"acceptance"`
		Result     *jobs.Result     `json:"result"`
	}
	if err := json.Unmarshal([]byte(stdout), &o); err != nil || o.Result == nil {
		t.Fatalf("submit --json output %q: %v", stdout, err)
	}
	return *o.Result
}

func check(t *testing.T, name string, r jobs.Result, want expectation) {
	t.Helper()
	if r.Verdict != want.Verdict || (want.FailedCheck != "" && r.FailedCheck != want.FailedCheck) ||
		!strings.Contains(r.Reason, want.ReasonContains) {
		t.Errorf("%s: got %s/%s %q, want %s/%s containing %q", name, r.Verdict, r.FailedCheck, r.Reason,
			want.Verdict, want.FailedCheck, want.ReasonContains)
	}
}

func exitFor(v jobs.Verdict) int {
	return map[jobs.Verdict]int{jobs.VerdictPass: 0, jobs.VerdictFail: 1, jobs.VerdictError: 2}[v]
}

// TestSubmitWaitVerdicts: the tiny image passes, a broken one fails with its reason,
// a job naming a missing file errors; each through `imagevet submit --wait`.
func TestSubmitWaitVerdicts(t *testing.T) {
	enabled(t)
	besideOthers(t)
	needLibvirt(t)
	fixturesDir(t)
	url := startNATS(t)
	startWorker(t, url, "e2e-verdicts")
	exp := expected(t)
	for _, name := range []string{"tiny.json", "tiny-panic.json", "missing-file.json", "unsafe-backing.json"} {
		want := exp[name]
		code, out, errOut := run(t, 10*time.Minute, "submit", "--nats", url, "--wait", "--json", "--timeout", "8m",
			filepath.Join("../fixtures/jobs", name))
		if code == 3 {
			t.Fatalf("%s: timed out\n%s", name, errOut)
		}
		r := resultOf(t, out)
		check(t, name, r, want)
		if code != exitFor(want.Verdict) {
			t.Errorf("%s: exit %d for verdict %s", name, code, r.Verdict)
		}
	}
	// The publisher's view: latest verdict per image name.
	code, out, _ := run(t, time.Minute, "status", "--nats", url)
	if code != 0 || !strings.Contains(out, "tiny-panic") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	if code, _, _ := run(t, time.Minute, "status", "--nats", url, "tiny"); code != exitFor(exp["tiny.json"].Verdict) {
		t.Errorf("status tiny: exit %d", code)
	}
	// A resubmission is a no-op answered with the stored verdict.
	code, out, _ = run(t, time.Minute, "submit", "--nats", url, "--wait", "--timeout", "30s", "../fixtures/jobs/tiny-panic.json")
	if code != exitFor(exp["tiny-panic.json"].Verdict) || !strings.Contains(out, "already submitted") {
		t.Errorf("resubmission: exit %d\n%s", code, out)
	}
}

// TestTwentyQueuedJobsConcurrencyTwo: 20 jobs queued at once on a worker with two
// slots all complete with exactly one result each. By default most of them stop at
// the image stage; IMAGEVET_E2E_BOOT_ALL=1 boots the tiny image for all 20.
func TestTwentyQueuedJobsConcurrencyTwo(t *testing.T) {
	enabled(t)
	besideOthers(t)
	needLibvirt(t)
	fixturesDir(t)
	url := startNATS(t)
	exp := expected(t)
	mix := []string{"tiny.json", "unsafe-empty.json", "missing-file.json", "unsafe-truncated.json", "unsafe-random.json"}
	if os.Getenv("IMAGEVET_E2E_BOOT_ALL") == "1" {
		mix = []string{"tiny.json"}
	}
	// Jobs are queued before any worker runs: the operator sets the queue up first
	// (submit never creates streams behind an operator's back).
	queueSetup(t, url)
	type queued struct{ id, fixture string }
	var all []queued
	for i := range 20 {
		fx := mix[i%len(mix)]
		id := fmt.Sprintf("e2e20-%02d", i)
		all = append(all, queued{id, fx})
		if code, out, errOut := run(t, time.Minute, "submit", "--nats", url, jobCopy(t, fx, id)); code != 0 {
			t.Fatalf("submit %s: exit %d %s %s", id, code, out, errOut)
		}
	}
	startWorker(t, url, "e2e-twenty")
	for _, q := range all {
		code, out, errOut := run(t, 20*time.Minute, "submit", "--nats", url, "--wait", "--json", "--timeout", "15m", jobCopy(t, q.fixture, q.id))
		if code == 3 {
			t.Fatalf("%s: timed out: %s", q.id, errOut)
		}
		check(t, q.id+" ("+q.fixture+")", resultOf(t, out), exp[q.fixture])
	}
	nc, q := openQueue(t, url)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := q.Stream(ctx, queue.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	info, err := rs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 20 {
		t.Errorf("%d results stored, want exactly 20", info.State.Msgs)
	}
	js2, _ := q.Stream(ctx, queue.StreamJobs)
	ji, _ := js2.Info(ctx)
	if ji.State.Msgs != 0 {
		t.Errorf("%d jobs left in the queue", ji.State.Msgs)
	}
}

func openQueue(t *testing.T, url string) (interface{ Close() }, *queue.Queue) {
	t.Helper()
	nc, err := queue.Connect(queue.ConnectOptions{URLs: queue.SplitURLs(url)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// As the first worker would, or finds the queue the worker set up.
	q, _, err := queue.Ensure(ctx, nc, queue.Config{AckWait: 15 * time.Second, MaxDeliver: 3}, "e2e")
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	return nc, q
}

// TestQueueOnDebianNATS exercises the queue API on Debian's nats-server (older than
// the embedded one): setup, dedupe, results, status, console objects.
func TestQueueOnDebianNATS(t *testing.T) {
	enabled(t)
	besideOthers(t)
	url := startNATS(t)
	nc, q := openQueue(t, url)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := q.Consumer(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../fixtures/jobs/tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	job, err := jobs.DecodeJob(data)
	if err != nil {
		t.Fatal(err)
	}
	a1, err1 := q.Submit(ctx, job)
	a2, err2 := q.Submit(ctx, job)
	if err1 != nil || err2 != nil || a1.Duplicate || !a2.Duplicate {
		t.Fatalf("submit: %v %v %+v %+v", err1, err2, a1, a2)
	}
	res := jobs.Result{Version: jobs.Version, JobID: job.ID, Verdict: jobs.VerdictPass, Checks: []jobs.CheckResult{},
		Stages: []jobs.Stage{}, Worker: "e2e", Attempt: 1, FinishedAt: time.Now(), Publish: job.Publish}
	if ok, err := q.PublishResult(ctx, res, strings.NewReader("full console\n")); err != nil || !ok {
		t.Fatalf("publish: %v %v", ok, err)
	}
	if ok, err := q.PublishResult(ctx, res, nil); err != nil || ok {
		t.Fatalf("second publish: %v %v", ok, err)
	}
	got, err := q.Wait(ctx, job.ID, func(jobs.Progress) {})
	if err != nil || got.Verdict != jobs.VerdictPass || got.ConsoleLog != queue.ConsoleRef(queue.ConsoleObject(job.ID, 1, "e2e")) {
		t.Fatalf("wait: %+v %v", got, err)
	}
	if st, ok, err := q.Status(ctx, job.Publish.Name); err != nil || !ok || st.JobID != job.ID {
		t.Fatalf("status: %+v %v %v", st, ok, err)
	}
	var console strings.Builder
	if err := q.Console(ctx, job.ID, &console); err != nil || console.String() != "full console\n" {
		t.Fatalf("console: %q %v", console.String(), err)
	}
}

// TestEmbeddedWorker: one host, no NATS service: the worker runs its own JetStream
// server and submit/status talk to it.
func TestEmbeddedWorker(t *testing.T) {
	enabled(t)
	besideOthers(t)
	needLibvirt(t)
	fixtures := fixturesDir(t)
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	state := stateDir(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const id = "e2e-embedded"
	t.Cleanup(func() { destroyDomains(t, id) })
	w := start(t, 40*time.Second, "embedded worker", imagevet(t), "worker", "--nats-port", strconv.Itoa(port),
		"--worker-id", id, "--state-dir", state, "--image-root", fixtures, "--accel", "tcg", "--tcg-factor", e2eTCGFactor, "--metrics", metrics, "--inspect=false")
	waitFor(t, 60*time.Second, "worker /healthz", func() bool {
		select {
		case <-w.done:
			t.Fatalf("worker exited:\n%s", w.output())
		default:
		}
		resp, err := http.Get("http://" + metrics + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if _, err := os.Stat(filepath.Join(state, "nats", "jetstream")); err != nil {
		t.Errorf("embedded store not under the state dir: %v", err)
	}
	idle := rssMiB(t, w.cmd.Process.Pid)
	code, out, errOut := run(t, 10*time.Minute, "submit", "--nats", url, "--wait", "--timeout", "8m", "../fixtures/jobs/tiny.json")
	if code != exitFor(expected(t)["tiny.json"].Verdict) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("worker RSS with embedded NATS: idle %.1f MiB, after a job %.1f MiB", idle, rssMiB(t, w.cmd.Process.Pid))
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if !strings.Contains(body.String(), `imagevet_jobs_total{verdict="`+string(expected(t)["tiny.json"].Verdict)+`"} 1`) {
		t.Errorf("metrics do not count the job:\n%s", tail(body.String(), 3000))
	}
	// Graceful stop: SIGTERM ends the worker well within its grace period.
	start := time.Now()
	w.stop(40 * time.Second)
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("idle worker took %s to stop", took)
	}
}

func rssMiB(t *testing.T, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
