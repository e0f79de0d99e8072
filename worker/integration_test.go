package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/internal/testenv"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm"
	"github.com/imagevet/imagevet/worker/vm/libvirt"
)

// The integration tests run every sample job in fixtures/jobs against the real
// libvirtd with qemu (TCG) and the fixture images, and compare each verdict with
// fixtures/jobs/expected.json.

// integrationEnv is what the integration tests share: a runner on real libvirt.
type integrationEnv struct {
	runner   *Runner
	cfg      Config
	hv       *countingHypervisor
	fixtures string
}

// countingHypervisor counts boots, so tests can prove a job never reached libvirt.
type countingHypervisor struct {
	vm.Hypervisor
	mu    sync.Mutex
	boots map[string]int
	// onBoot, if set, sees every spec before it boots (benchmarks watch its console).
	onBoot func(vm.Spec)
}

func (c *countingHypervisor) Boot(ctx context.Context, spec vm.Spec) (vm.Machine, error) {
	c.mu.Lock()
	c.boots[spec.Job]++
	onBoot := c.onBoot
	c.mu.Unlock()
	if onBoot != nil {
		onBoot(spec)
	}
	return c.Hypervisor.Boot(ctx, spec)
}

func (c *countingHypervisor) bootsOf(job string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.boots[job]
}

// skipOrFail skips a test that cannot run here, or fails it under CI, where
// everything must be present.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	testenv.Missing(t, format, args...)
}

func fixturesDir() string {
	if d := os.Getenv("IMAGEVET_FIXTURES"); d != "" {
		return d
	}
	return "/var/cache/imagevet/fixtures"
}

// envCount numbers the integration environments of this test process: each has
// its own worker id, so its machines, sweeps and job directories are its own and
// tests that boot guests can run side by side.
var envCount atomic.Int32

// newParallelIntegrationEnv is newIntegrationEnv for a test that may run beside
// one other (go test's -parallel, GOMAXPROCS by default: two TCG guests on a
// 2-core host, each on its own core). Tests that measure the whole process or
// host (memory, goroutines, process counts) stay sequential.
func newParallelIntegrationEnv(t *testing.T) *integrationEnv {
	t.Helper()
	if !testing.Short() {
		t.Parallel()
	}
	return newIntegrationEnv(t)
}

func newIntegrationEnv(t testing.TB) *integrationEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: boots real guests (drop -short)")
	}
	if c, err := net.DialTimeout("unix", "/var/run/libvirt/libvirt-sock", time.Second); err != nil {
		skipOrFail(t, "libvirtd not reachable: %v", err)
	} else {
		c.Close()
	}
	fx := fixturesDir()
	if _, err := os.Stat(filepath.Join(fx, "tiny.qcow2")); err != nil {
		skipOrFail(t, "fixtures not built (run fixtures/build): %v", err)
	}
	// libvirt's qemu user must traverse the state directory: not a 0700 t.TempDir.
	state, err := os.MkdirTemp("/var/tmp", "imagevet-itest-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(state, 0o755)
	t.Cleanup(func() { os.RemoveAll(state) })

	cfg := DefaultConfig()
	cfg.WorkerID = fmt.Sprintf("itest%d-%d", os.Getpid(), envCount.Add(1))
	cfg.StateDir = state
	cfg.Accel = "tcg"
	cfg.ImageRoots = []string{fx}
	// One test turns the inspection on (runner.inspect): each costs an appliance.
	cfg.Inspect = false
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Prepare(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := image.NewStore(image.StoreConfig{Dir: filepath.Join(state, "cache"), FileRoots: cfg.ImageRoots, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lv, err := libvirt.New(ctx, libvirt.Config{Logger: log})
	if err != nil {
		skipOrFail(t, "libvirt: %v", err)
	}
	hv := &countingHypervisor{Hypervisor: lv, boots: map[string]int{}}
	env := &integrationEnv{runner: NewRunner(cfg, store, hv, log), cfg: cfg, hv: hv, fixtures: fx}
	t.Cleanup(env.runner.Close)
	t.Cleanup(func() {
		// Whatever happened, no machine of this worker survives the test.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if n, err := lv.SweepOrphans(ctx, vm.WorkerPrefix(cfg.DomainPrefix, cfg.WorkerID), func(string) bool { return true }); err != nil || n > 0 {
			t.Errorf("machines left behind: %d (%v)", n, err)
		}
		lv.Close()
		left, _ := filepath.Glob(filepath.Join(state, "jobs", cfg.WorkerID, "*"))
		if len(left) > 0 {
			t.Errorf("job directories left behind: %v", left)
		}
		tmp, _ := filepath.Glob(filepath.Join(state, "cache", "tmp", "*"))
		if len(tmp) > 0 {
			t.Errorf("cache temp files left behind: %v", tmp)
		}
	})
	return env
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type expectation struct {
	Verdict        jobs.Verdict `json:"verdict"`
	FailedCheck    string       `json:"failed_check"`
	ReasonContains string       `json:"reason_contains"`
}

func loadSample(t testing.TB, name string) (jobs.Job, expectation) {
	t.Helper()
	dir := filepath.Join("..", "fixtures", "jobs")
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	job, err := jobs.DecodeJob(data)
	if err != nil {
		t.Fatal(err)
	}
	var all map[string]expectation
	raw, _ := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatal(err)
	}
	e, ok := all[name]
	if !ok {
		t.Fatalf("%s: no expectation", name)
	}
	return job, e
}

// runSample runs one sample job and checks its verdict against expected.json.
func (env *integrationEnv) runSample(t *testing.T, name string) (jobs.Result, []jobs.Progress) {
	t.Helper()
	job, want := loadSample(t, name)
	if _, err := os.Stat(filepath.Join(env.fixtures, job.Image.Source)); err != nil && !strings.HasPrefix(name, "missing") {
		skipOrFail(t, "fixture %s not built: %v", job.Image.Source, err)
	}
	var (
		mu     sync.Mutex
		events []jobs.Progress
	)
	res := env.runner.Run(context.Background(), job, 1, func(p jobs.Progress) {
		mu.Lock()
		events = append(events, p)
		mu.Unlock()
	})
	data, _ := jobs.MarshalResult(res)
	if res.Verdict != want.Verdict || res.FailedCheck != want.FailedCheck || !strings.Contains(strings.ToLower(res.Reason), strings.ToLower(want.ReasonContains)) {
		t.Fatalf("%s: got %s/%s %q; want %s/%s containing %q\n%s", name, res.Verdict, res.FailedCheck, res.Reason,
			want.Verdict, want.FailedCheck, want.ReasonContains, data)
	}
	if res.Verdict != jobs.VerdictPass && res.Reason == "" {
		t.Errorf("%s: a %s verdict without a reason", name, res.Verdict)
	}
	t.Logf("%s: %s %s %q in %s", name, res.Verdict, res.FailedCheck, res.Reason, res.FinishedAt.Sub(res.StartedAt).Round(time.Second))
	mu.Lock()
	defer mu.Unlock()
	return res, events
}

// Inputs the ingest must refuse never reach libvirt.
func TestIntegrationRejectedBeforeBoot(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	for _, name := range []string{"unsafe-backing.json", "unsafe-datafile.json", "unsafe-rawasqcow2.json",
		"unsafe-truncated.json", "unsafe-empty.json", "unsafe-random.json", "tiny-badsum.json", "missing-file.json"} {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			res, _ := env.runSample(t, name)
			if n := env.hv.bootsOf(res.JobID); n != 0 {
				t.Fatalf("%s reached libvirt (%d boots)", name, n)
			}
			if res.Retryable {
				t.Errorf("%s: must not be retried", name)
			}
		})
	}
}

// skippedAsExpected: tiny's cloud-init check (it has none), and the inspection's
// checks where the suite's worker has the inspection off (all jobs but one).
func skippedAsExpected(c jobs.CheckResult) bool {
	return c.Status == jobs.StatusSkip && (c.Name == jobs.CheckCloudInit ||
		(c.Name == jobs.CheckIdentity || c.Name == jobs.CheckHygiene) && strings.HasPrefix(c.Reason, "the inspection is off"))
}

func TestIntegrationTinyPasses(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	for _, name := range []string{"tiny.json", "tiny-configdrive.json"} {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			res, _ := env.runSample(t, name)
			for _, c := range res.Checks {
				if c.Status != jobs.StatusPass && !skippedAsExpected(c) {
					t.Errorf("check %s: %s %q", c.Name, c.Status, c.Reason)
				}
			}
			if c := res.Check(jobs.CheckCloudInit); c == nil || !strings.Contains(c.Reason, "no cloud-init") {
				t.Errorf("tiny has no cloud-init; the check should say so: %+v", c)
			}
			if res.ImageFacts == nil || len(res.ImageFacts.OSHashValue) != 128 || res.ImageFacts.OSHashAlgo != "sha512" {
				t.Errorf("pass result lacks the sha512 os_hash: %+v", res.ImageFacts)
			}
		})
	}
}

// Each broken fixture fails on the check that names its fault.
func TestIntegrationBrokenTinyFails(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	for _, name := range []string{"tiny-nossh.json", "tiny-nonet.json", "tiny-noseed.json", "tiny-badhostname.json", "tiny-uefi-mismatch.json"} {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			t.Parallel() // tiny guests idle most of their run: two at a time
			res, _ := env.runSample(t, name)
			if res.ConsoleTail == "" {
				t.Error("a failed verdict must carry the console tail")
			}
		})
	}
}

// A kernel panic fails the job within 10 s of the panic line reaching the console.
func TestIntegrationPanicFailsFast(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	res, events := env.runSample(t, "tiny-panic.json")
	var seen, failed time.Time
	for _, p := range events {
		if p.Stage == "boot" && p.Event == "info" && strings.HasPrefix(p.Message, "fatal console line") && seen.IsZero() {
			seen = p.Time
		}
	}
	failed = res.FinishedAt
	if seen.IsZero() {
		t.Fatalf("no fatal console event in %+v", events)
	}
	if d := failed.Sub(seen); d > 10*time.Second {
		t.Fatalf("verdict %s after the panic line; want within 10s", d)
	}
	if !strings.Contains(res.ConsoleTail, "Kernel panic") {
		t.Errorf("console tail lacks the panic: %q", res.ConsoleTail)
	}
}

// Two more generations of real cloud-init pass: Debian 11's 20.4 and Debian 13's.
func TestIntegrationDebianGenerations(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	for _, name := range []string{"debian11.json", "debian13.json"} {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			res, _ := env.runSample(t, name)
			c := res.Check(jobs.CheckCloudInit)
			if c == nil || c.Status != jobs.StatusPass || !strings.Contains(strings.ToLower(c.Reason+c.Detail), "nocloud") {
				t.Fatalf("cloud-init: %+v", c)
			}
		})
	}
}

// The real Debian 12 cloud image passes with real cloud-init over both datasources.
func TestIntegrationDebian12(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	for _, name := range []string{"debian12.json", "debian12-uefi-configdrive.json"} {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			// The one job of the suite with the offline inspection beside its boot.
			inspected := name == "debian12.json"
			if inspected {
				env.runner.inspect = inspect.Inspect
				defer func() { env.runner.inspect = nil }()
			}
			res, _ := env.runSample(t, name)
			if inspected {
				assertDebian12Inspected(t, res)
			}
			c := res.Check(jobs.CheckCloudInit)
			if c == nil || c.Status != jobs.StatusPass {
				t.Fatalf("cloud-init: %+v", c)
			}
			want := "nocloud"
			if strings.Contains(name, "configdrive") {
				want = "configdrive"
			}
			if !strings.Contains(strings.ToLower(c.Reason+c.Detail), want) {
				t.Errorf("cloud-init check does not show datasource %s: %q", want, c.Reason)
			}
		})
	}
}

// assertDebian12Inspected checks what the inspection of the debian12 fixture
// found and made of it.
func assertDebian12Inspected(t *testing.T, res jobs.Result) {
	t.Helper()
	ins := res.Inspection
	if ins == nil {
		t.Fatal("no inspection on the result")
	}
	t.Logf("inspection took %s: %s %s %s, %d packages, kernels %v", ins.Took.D(), ins.Distro, ins.Version, ins.Arch, len(ins.Packages), ins.Kernels)
	if ins.Error != "" || ins.Distro != "debian" || !strings.HasPrefix(ins.Version, "12") || ins.Codename != "bookworm" ||
		ins.Arch != "x86_64" || ins.PackageFormat != "deb" || ins.AdminUser != "debian" || len(ins.Kernels) == 0 || len(ins.Packages) < 100 {
		t.Errorf("inspection: %+v", *ins)
	}
	if c := res.Check(jobs.CheckIdentity); c == nil || c.Status != jobs.StatusPass || !strings.HasPrefix(c.Reason, "image is debian 12") {
		t.Errorf("identity: %+v", c)
	}
	if ins.VersionID != "12" {
		t.Errorf("VERSION_ID %q, want 12", ins.VersionID)
	}
	if p := res.Publish.Properties; p["architecture"] != "x86_64" || p["os_admin_user"] != "debian" {
		t.Errorf("properties not filled from the inspection: %v", p)
	}
}
