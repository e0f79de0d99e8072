package worker

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/worker/vm"
)

// evidenceOf is, per broken fixture, the first console line that shows what is
// wrong with it: the evidence its verdict rests on.
var evidenceOf = map[string]string{
	"tiny-panic.json":         `Kernel panic`,
	"tiny-nossh.json":         `no SSH server in this image`,
	"tiny-nonet.json":         `no network device`,
	"tiny-noseed.json":        `user debian: 0 authorized key`,
	"tiny-badhostname.json":   `hostname: localhost`,
	"tiny-uefi-mismatch.json": `UEFI Interactive Shell`,
	"debian12-nossh.json":     `^\S+ login:`,
	"debian12-cdonly.json":    `DataSourceNone`,
	"debian12-uefionly.json":  `Booting from Hard Disk`,
	// Ignition's last word before it falls silent, waiting for ever.
	"flatcar-like-nonet.json": `failed to fetch config from metadata service`,
}

// BenchmarkEvidenceToVerdict runs every broken fixture and reports, each on its
// own: the time from its console first showing the evidence to the verdict
// (target: the after-boot grace + 10 s) and the whole run (target: under 2 min
// under TCG). The evidence time is when a second console watch, started with the
// domain, read the evidence line.
func BenchmarkEvidenceToVerdict(b *testing.B) {
	env := newIntegrationEnv(b)
	for _, name := range slices.Sorted(maps.Keys(evidenceOf)) {
		b.Run(strings.TrimSuffix(name, ".json"), func(b *testing.B) {
			job, want := loadSample(b, name)
			if _, err := os.Stat(filepath.Join(env.fixtures, job.Image.Source)); err != nil {
				skipOrFail(b, "fixture %s not built: %v", job.Image.Source, err)
			}
			evidence := regexp.MustCompile(evidenceOf[name])
			var after, wall time.Duration
			for i := 0; i < b.N; i++ {
				watches := make(chan *console.Console, 1)
				env.hv.mu.Lock()
				env.hv.onBoot = func(s vm.Spec) {
					watches <- console.Watch(context.Background(), s.ConsoleLog,
						[]console.Rule{{Name: "evidence", Kind: console.Milestone, Pattern: evidence, Reason: "evidence"}})
				}
				env.hv.mu.Unlock()
				res := env.runner.Run(context.Background(), withID(job, fmt.Sprintf("%s-ev-%d", job.ID, i)), 1, nil)
				env.hv.mu.Lock()
				env.hv.onBoot = nil
				env.hv.mu.Unlock()
				if res.Verdict != want.Verdict || res.FailedCheck != want.FailedCheck {
					b.Fatalf("%s: %s/%s %q", name, res.Verdict, res.FailedCheck, res.Reason)
				}
				w := <-watches
				w.Close()
				m, ok := w.Milestone("evidence")
				if !ok {
					b.Fatalf("%s: the console never showed %q", name, evidenceOf[name])
				}
				decided := res.FinishedAt
				for _, s := range res.Stages {
					if s.Name == "cleanup" {
						decided = s.Start
					}
				}
				after += decided.Sub(m.Time)
				wall += res.FinishedAt.Sub(res.StartedAt)
				b.Logf("%s: evidence at %.1f s, verdict %.1f s after it, run %.1f s: %s", name,
					m.Time.Sub(res.StartedAt).Seconds(), decided.Sub(m.Time).Seconds(), res.FinishedAt.Sub(res.StartedAt).Seconds(), res.Reason)
			}
			b.ReportMetric(after.Seconds()/float64(b.N), "after-evidence-s/op")
			b.ReportMetric(wall.Seconds()/float64(b.N), "run-s/op")
		})
	}
}

// BenchmarkDebian12Pass compares imagevet's time to pass debian12 over NoCloud
// (every check; decided, and with cleanup) with the same image and seed under
// plain qemu until the console prints cloud-init's "finished at" line. Runs
// alternate so machine load hits both alike. Target: ratio <= 1.05.
func BenchmarkDebian12Pass(b *testing.B) {
	env := newIntegrationEnv(b)
	job, _ := loadSample(b, "debian12.json")
	base := filepath.Join(env.fixtures, job.Image.Source)
	if _, err := os.Stat(base); err != nil {
		skipOrFail(b, "fixture debian12 not built: %v", err)
	}
	finished := regexp.MustCompile(`Cloud-init v\. \S+ finished at`)
	benchVersusFloor(b, env, job, "bench-d12", func() (time.Duration, error) {
		return plainQemuUntilConsole(b, base, job.Machine.MemoryMiB, job.Machine.VCPUs, finished, 5*time.Minute)
	})
}
