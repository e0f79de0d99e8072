package worker

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/internal/testenv"
	"github.com/imagevet/imagevet/jobs"
)

// BenchmarkInspectionCost runs debian12.json in pairs, once with the offline
// inspection beside the boot and once without, alternating which goes first,
// and reports the mean time to verdict (cleanup left out) of each and their
// ratio (target: <= 1.05), with the inspection's own time. Each op is one
// pair: run it with -benchtime=3x. The host's load average is logged with each
// run, as the figures move with it.
func BenchmarkInspectionCost(b *testing.B) {
	env := newIntegrationEnv(b)
	job, _ := loadSample(b, "debian12.json")
	if _, err := os.Stat(fixturesDir() + "/" + job.Image.Source); err != nil {
		skipOrFail(b, "fixture debian12 not built: %v", err)
	}
	// Room for a loaded host: a run that misses its deadline measures nothing.
	job.Timeouts.Boot, job.Timeouts.CloudInit = jobs.Duration(200*time.Second), jobs.Duration(200*time.Second)
	job.Timeouts.Total = jobs.Duration(40 * time.Minute)
	// One run first, so the image is in the store and the appliance built.
	env.runner.inspect = inspect.Inspect
	defer func() { env.runner.inspect = nil }()
	env.runner.Run(context.Background(), withID(job, "bench-insp-warm"), 1, nil)
	var on, off, inspecting time.Duration
	run := func(i int, inspected bool) time.Duration {
		env.runner.inspect = nil
		kind := "off"
		if inspected {
			env.runner.inspect, kind = inspect.Inspect, "on"
		}
		load := testenv.LoadAverage()
		res := env.runner.Run(context.Background(), withID(job, fmt.Sprintf("bench-insp-%s-%d", kind, i)), 1, nil)
		if res.Verdict != jobs.VerdictPass {
			b.Fatalf("inspection %s: %s %s %q", kind, res.Verdict, res.FailedCheck, res.Reason)
		}
		took := res.FinishedAt.Sub(res.StartedAt)
		for _, s := range res.Stages {
			if s.Name == "cleanup" {
				took -= s.Duration.D()
			}
		}
		line := fmt.Sprintf("pair %d, inspection %s: verdict in %.1f s (load %s)", i, kind, took.Seconds(), load)
		if inspected {
			if res.Inspection == nil || res.Inspection.Error != "" {
				b.Fatalf("inspection: %+v", res.Inspection)
			}
			inspecting += res.Inspection.Took.D()
			line += fmt.Sprintf("; inspection took %.1f s", res.Inspection.Took.D().Seconds())
		}
		b.Log(line)
		return took
	}
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			on += run(i, true)
			off += run(i, false)
		} else {
			off += run(i, false)
			on += run(i, true)
		}
	}
	n := float64(b.N)
	b.ReportMetric(on.Seconds()/n, "on-s/op")
	b.ReportMetric(off.Seconds()/n, "off-s/op")
	b.ReportMetric(inspecting.Seconds()/n, "inspect-s/op")
	b.ReportMetric(on.Seconds()/off.Seconds(), "ratio")
}
