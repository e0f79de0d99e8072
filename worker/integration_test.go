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

// newParallelIntegrationEnv is newIntegrationEnv for a test that runs beside
// others, within the guest budget and at its raised TCG factor
// (budget_integration_test.go). Tests that measure the whole process or host
// (memory, goroutines, process counts) stay sequential.
func newParallelIntegrationEnv(t *testing.T) *integrationEnv {
	t.Helper()
	return newParallelIntegrationEnvFactor(t, besideOthersTCGFactor)
}

// newParallelIntegrationEnvFactor is newParallelIntegrationEnv at a given TCG
// factor.
func newParallelIntegrationEnvFactor(t *testing.T, tcgFactor float64) *integrationEnv {
	t.Helper()
	if !testing.Short() {
		t.Parallel()
		guests.gatherFirst()
	}
	return newIntegrationEnvFactor(t, tcgFactor)
}

// eachSample runs check on each sample job in a subtest of its own, side by side
// within the guest budget, each on an env of its own from newEnv.
func eachSample(t *testing.T, names []string, newEnv func(*testing.T) *integrationEnv, check func(t *testing.T, env *integrationEnv, name string)) {
	t.Helper()
	if !testing.Short() {
		t.Parallel()
	}
	for _, name := range names {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			check(t, newEnv(t), name)
		})
	}
}

// newIntegrationEnv is an env on the real libvirt with the worker's default TCG
// factor.
func newIntegrationEnv(t testing.TB) *integrationEnv {
	t.Helper()
	return newIntegrationEnvFactor(t, DefaultConfig().TCGFactor)
}

func newIntegrationEnvFactor(t testing.TB, tcgFactor float64) *integrationEnv {
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
	cfg.TCGFactor = tcgFactor
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
	var events []jobs.Progress // run replays the returned attempt's events here
	res := env.run(t, job, func(p jobs.Progress) { events = append(events, p) })
	data, _ := jobs.MarshalResult(res)
	if res.Verdict != want.Verdict || res.FailedCheck != want.FailedCheck || !strings.Contains(strings.ToLower(res.Reason), strings.ToLower(want.ReasonContains)) {
		t.Fatalf("%s: got %s/%s %q; want %s/%s containing %q\n%s", name, res.Verdict, res.FailedCheck, res.Reason,
			want.Verdict, want.FailedCheck, want.ReasonContains, data)
	}
	if res.Verdict != jobs.VerdictPass && res.Reason == "" {
		t.Errorf("%s: a %s verdict without a reason", name, res.Verdict)
	}
	t.Logf("%s: %s %s %q in %s", name, res.Verdict, res.FailedCheck, res.Reason, res.FinishedAt.Sub(res.StartedAt).Round(time.Second))
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
	eachSample(t, []string{"tiny.json", "tiny-configdrive.json"}, newParallelIntegrationEnv, func(t *testing.T, env *integrationEnv, name string) {
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

// Each broken fixture fails on the check that names its fault.
func TestIntegrationBrokenTinyFails(t *testing.T) {
	names := []string{"tiny-nossh.json", "tiny-nonet.json", "tiny-noseed.json", "tiny-badhostname.json", "tiny-uefi-mismatch.json"}
	eachSample(t, names, newParallelIntegrationEnv, func(t *testing.T, env *integrationEnv, name string) {
		res, _ := env.runSample(t, name)
		if res.ConsoleTail == "" {
			t.Error("a failed verdict must carry the console tail")
		}
	})
}

// scaled is d under env's TCG factor, as the runner scales a job's timeouts.
func (env *integrationEnv) scaled(d jobs.Duration) time.Duration {
	return time.Duration(float64(d) * env.cfg.TCGFactor)
}

// fastVerdict is how soon after a fatal console line the verdict must come: 10 s
// at the worker's default TCG factor, scaled with env's.
func (env *integrationEnv) fastVerdict() time.Duration {
	return time.Duration(float64(10*time.Second) * env.cfg.TCGFactor / DefaultConfig().TCGFactor)
}

// A kernel panic fails the job within 10 s (at the default TCG factor) of the
// panic line reaching the console.
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
	if d, want := failed.Sub(seen), env.fastVerdict(); d > want {
		t.Fatalf("verdict %s after the panic line; want within %s", d, want)
	}
	if !strings.Contains(res.ConsoleTail, "Kernel panic") {
		t.Errorf("console tail lacks the panic: %q", res.ConsoleTail)
	}
}

// Two more generations of real cloud-init pass: Debian 11's 20.4 and Debian 13's.
func TestIntegrationDebianGenerations(t *testing.T) {
	eachSample(t, []string{"debian11.json", "debian13.json"}, newParallelIntegrationEnv, func(t *testing.T, env *integrationEnv, name string) {
		res, _ := env.runSample(t, name)
		c := res.Check(jobs.CheckCloudInit)
		if c == nil || c.Status != jobs.StatusPass || !strings.Contains(strings.ToLower(c.Reason+c.Detail), "nocloud") {
			t.Fatalf("cloud-init: %+v", c)
		}
	})
}

// The real Debian 12 cloud image passes with real cloud-init over both datasources.
func TestIntegrationDebian12(t *testing.T) {
	names := []string{"debian12.json", "debian12-configdrive.json", "debian12-uefi.json"}
	eachSample(t, names, newParallelIntegrationEnv, func(t *testing.T, env *integrationEnv, name string) {
		// The one job of the suite with the offline inspection beside its boot.
		inspected := name == "debian12.json"
		if inspected {
			env.runner.inspect = inspect.Inspect
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
