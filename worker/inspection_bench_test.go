package worker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/internal/testenv"
	"github.com/imagevet/imagevet/jobs"
)

// inspectionPairs is how many alternated pairs one op of
// BenchmarkInspectionCost runs.
const inspectionPairs = 3

// BenchmarkInspectionCost runs debian12.json in alternated pairs, once with the
// offline inspection beside the boot and once without (which goes first
// alternates), and reports the mean time to verdict (cleanup left out) of each,
// their ratio (target: <= 1.05) and the inspection's own time. One op is
// inspectionPairs pairs: run it with -benchtime=1x. A run's time to verdict
// leaves out its fetch (the first run copies the image into the store) and its
// cleanup. A pair with a run that did not pass (a loaded host's guest can miss
// its deadlines) is logged and not counted. Each run's line, with the host's
// load average, is also printed as it ends (on a loaded host a run takes
// minutes).
func BenchmarkInspectionCost(b *testing.B) {
	benchmarkInspectionCost(b, false)
}

// BenchmarkInspectionLaunchFloor is BenchmarkInspectionCost with an inspector
// that only launches libguestfs's appliance on the image, as the inspect
// package starts it (direct backend, TCG, the same memory, nice 10 and idle
// I/O), and quits; the inspection it reports is a real one made before the
// timer starts. Its ratio is the least any inspection through libguestfs can
// cost the boot beside it on this host: what the 5 % target leaves to the
// inspection's own work.
func BenchmarkInspectionLaunchFloor(b *testing.B) {
	benchmarkInspectionCost(b, true)
}

// launchOnly returns an Inspector that launches the appliance on the file and
// quits, then answers with a copy of real, made earlier.
func launchOnly(real *jobs.Inspection) Inspector {
	return func(ctx context.Context, file, format string, cfg inspect.Config) *jobs.Inspection {
		start := time.Now()
		cmd := exec.CommandContext(ctx, "nice", "-n", "10", "ionice", "-c", "3",
			"guestfish", "--ro", "--format="+format, "-a", file, "run")
		cmd.Env = append(os.Environ(), "LIBGUESTFS_BACKEND=direct", "LIBGUESTFS_BACKEND_SETTINGS=force_tcg",
			fmt.Sprintf("LIBGUESTFS_MEMSIZE=%d", cfg.MemoryMiB))
		// A job that fails first cancels ctx: guestfish and its qemu go together.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		ins := *real
		if out, err := cmd.CombinedOutput(); err != nil {
			ins.Error = fmt.Sprintf("launch: %v: %s", err, out)
		}
		ins.Took = jobs.Duration(time.Since(start))
		return &ins
	}
}

func benchmarkInspectionCost(b *testing.B, floor bool) {
	env := newIntegrationEnv(b)
	job, _ := loadSample(b, "debian12.json")
	if _, err := os.Stat(fixturesDir() + "/" + job.Image.Source); err != nil {
		skipOrFail(b, "fixture debian12 not built: %v", err)
	}
	// Room for a loaded host: a run that misses its deadline measures nothing.
	job.Timeouts.Boot, job.Timeouts.CloudInit = jobs.Duration(200*time.Second), jobs.Duration(200*time.Second)
	job.Timeouts.Total = jobs.Duration(40 * time.Minute)
	defer func() { env.runner.inspect = nil }()
	inspector := Inspector(inspect.Inspect)
	if floor {
		real := inspect.Inspect(context.Background(), fixturesDir()+"/"+job.Image.Source, "qcow2",
			inspect.Config{TCG: true, MemoryMiB: inspectMemoryMiB})
		if real.Error != "" {
			b.Fatalf("inspection before the timer: %s", real.Error)
		}
		inspector = launchOnly(real)
	}
	var on, off, inspecting time.Duration
	// run returns the run's time to verdict, or false when it did not pass.
	run := func(name string, inspected bool) (time.Duration, time.Duration, bool) {
		env.runner.inspect = nil
		if inspected {
			env.runner.inspect = inspector
		}
		load := testenv.LoadAverage()
		res := env.runner.Run(context.Background(), withID(job, "bench-insp-"+name), 1, nil)
		took := res.FinishedAt.Sub(res.StartedAt)
		for _, s := range res.Stages {
			if s.Name == "cleanup" || s.Name == "fetch" {
				took -= s.Duration.D()
			}
		}
		line := fmt.Sprintf("%s: %s in %.1f s (load before %s) [%s]", name, res.Verdict, took.Seconds(), load, stageSpans(res))
		var insp time.Duration
		if inspected && res.Inspection != nil {
			insp = res.Inspection.Took.D()
			line += fmt.Sprintf("; inspection took %.1f s %s", insp.Seconds(), res.Inspection.Error)
		}
		passed := res.Verdict == jobs.VerdictPass && (!inspected || res.Inspection != nil && res.Inspection.Error == "")
		if !passed {
			line += fmt.Sprintf(": not counted (%s %q)", res.FailedCheck, res.Reason)
		}
		b.Log(line)
		fmt.Fprintln(os.Stderr, b.Name()+":", line)
		return took, insp, passed
	}
	b.ResetTimer()
	pairs := 0
	for i := range b.N {
		for p := range inspectionPairs {
			n := fmt.Sprintf("%d-%d", i, p)
			var tOn, tOff, insp time.Duration
			var okOn, okOff bool
			if p%2 == 0 {
				tOn, insp, okOn = run("on-"+n, true)
				tOff, _, okOff = run("off-"+n, false)
			} else {
				tOff, _, okOff = run("off-"+n, false)
				tOn, insp, okOn = run("on-"+n, true)
			}
			if okOn && okOff {
				on, off, inspecting, pairs = on+tOn, off+tOff, inspecting+insp, pairs+1
			}
		}
	}
	if pairs == 0 {
		b.Fatal("no pair passed")
	}
	np := float64(pairs)
	b.ReportMetric(on.Seconds()/np, "on-s/pair")
	b.ReportMetric(off.Seconds()/np, "off-s/pair")
	b.ReportMetric(inspecting.Seconds()/np, "inspect-s/pair")
	b.ReportMetric(on.Seconds()/off.Seconds(), "ratio")
}

// stageSpans lists each stage as name@start+duration in seconds from the job's
// start: where an inspection's cost lands (a slower boot, or a verdict that
// waited for it).
func stageSpans(res jobs.Result) string {
	var b strings.Builder
	for i, s := range res.Stages {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s@%.1f+%.1f", s.Name, s.Start.Sub(res.StartedAt).Seconds(), s.Duration.D().Seconds())
	}
	return b.String()
}
