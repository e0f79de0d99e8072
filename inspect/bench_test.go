package inspect

import (
	"testing"
	"time"

	"github.com/imagevet/imagevet/internal/testenv"
)

// BenchmarkInspect measures one inspection under TCG (the appliance's launch
// included, niced as the worker runs it) of the tiny fixture (no OS
// recognised) and of debian12 (facts, packages, hygiene evidence). Run it with
// -benchtime=3x; it logs the host's load average before and after, as the
// figures move with it.
func BenchmarkInspect(b *testing.B) {
	for _, fixture := range []string{"tiny", "debian12"} {
		b.Run(fixture, func(b *testing.B) {
			file := needGuestfish(b, fixture)
			b.Logf("load average before: %s", testenv.LoadAverage())
			var took time.Duration
			for range b.N {
				ins := Inspect(b.Context(), file, "qcow2", Config{TCG: true, Nice: true, MemoryMiB: 768})
				if fixture == "debian12" && (ins.Error != "" || ins.Distro != "debian") {
					b.Fatalf("debian12: %+v", *ins)
				}
				took += ins.Took.D()
			}
			b.Logf("load average after: %s", testenv.LoadAverage())
			b.ReportMetric(took.Seconds()/float64(b.N), "inspect-s/op")
		})
	}
}
