package jobs

import (
	"testing"
	"time"
)

func TestChangesSummary(t *testing.T) {
	c := &Changes{PreviousJob: "d12-1110", PreviousVersion: "20261110-1",
		Added:        []Package{{Name: "zstd"}, {Name: "libzstd1"}, {Name: "linux-image-6.1.0-28-cloud-amd64"}},
		Removed:      []Package{{Name: "linux-image-6.1.0-18-cloud-amd64"}},
		Upgraded:     []Upgrade{{Name: "libc6", Before: "2.36-9+deb12u4", After: "2.36-9+deb12u9"}, {Name: "libssl3", Before: "3.0.15-1~deb12u1", After: "3.0.14-1~deb12u2", Downgrade: true}},
		KernelBefore: "6.1.0-18-cloud-amd64", KernelAfter: "6.1.0-28-cloud-amd64",
		SizeBefore: 400, SizeAfter: 416, VirtualSizeBefore: 3 << 30, VirtualSizeAfter: 3 << 30,
		BootBefore: Duration(40 * time.Second), BootAfter: Duration(54 * time.Second),
		VerdictBefore: Duration(100 * time.Second), VerdictAfter: Duration(95 * time.Second),
		Regressions: []string{"boot time 40s → 54s (+35 %, beyond the family's 30 %)"}, Regressed: []string{MeasureBoot}}
	want := "since 20261110-1: +3 −1 ~2 packages (1 downgraded), kernel 6.1.0-18-cloud-amd64 → 6.1.0-28-cloud-amd64, size +4 %, boot +35 % (regression), time to verdict -5 %"
	if got := c.Summary(); got != want {
		t.Errorf("summary\n %s\nwant\n %s", got, want)
	}
	bare := &Changes{PreviousJob: "d12-1110"}
	if got, want := bare.Summary(), "since d12-1110: nothing to compare"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
}
