package inspect

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

func TestComparePackageVersionsInDebianOrder(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"2.36-9+deb12u4", "2.36-9+deb12u7", -1},
		{"6.1.0-28", "6.1.0-31", -1},
		{"252.31-1~deb12u1", "252.33-1~deb12u1", -1},
		{"3.0.15-1~deb12u1", "3.0.14-1~deb12u2", 1},
		{"1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u5", -1},
		{"1:1.0", "2.0", 1},                 // the epoch wins
		{"1.0~rc1-1", "1.0-1", -1},          // a tilde sorts before the release
		{"1.0-1", "1.0-1+b1", -1},           // a binNMU is newer
		{"1.0", "1.0-1", -1},                // no revision sorts before one
		{"1.10", "1.9", 1},                  // numbers, not characters
		{"1.01", "1.1", 0},                  // leading zeros do not count
		{"1.0a", "1.0", 1},                  // a letter after the end
		{"1.0", "1.0~", 1},                  // the end before a tilde
		{"1.0+dfsg", "1.0.1", -1},           // '+' ranks above letters but '.' then 1
		{"2:1.2.3-4", "2:1.2.3-4", 0},       // equal
		{"20240918.1-1", "20240918.1-1", 0}, // equal
	}
	for _, c := range cases {
		got := ComparePackageVersions(c.a, c.b)
		if sign(got) != c.want {
			t.Errorf("ComparePackageVersions(%q, %q) = %d, want sign %d", c.a, c.b, got, c.want)
		}
		if back := ComparePackageVersions(c.b, c.a); sign(back) != -c.want {
			t.Errorf("ComparePackageVersions(%q, %q) = %d, want sign %d", c.b, c.a, back, -c.want)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// Two Debian 12 point releases' manifests.
var (
	bookworm5 = []jobs.Package{
		{Name: "openssh-server", Version: "1:9.2p1-2+deb12u3", Arch: "amd64"},
		{Name: "libc6", Version: "2.36-9+deb12u4", Arch: "amd64"},
		{Name: "linux-image-6.1.0-18-cloud-amd64", Version: "6.1.76-1", Arch: "amd64"},
		{Name: "systemd", Version: "252.22-1~deb12u1", Arch: "amd64"},
		{Name: "python3-six", Version: "1.16.0-4", Arch: "all"},
		{Name: "libssl3", Version: "3.0.15-1~deb12u1", Arch: "amd64"},
	}
	bookworm8 = []jobs.Package{
		{Name: "libc6", Version: "2.36-9+deb12u9", Arch: "amd64"},
		{Name: "systemd", Version: "252.33-1~deb12u1", Arch: "amd64"},
		{Name: "openssh-server", Version: "1:9.2p1-2+deb12u3", Arch: "amd64"},
		{Name: "linux-image-6.1.0-28-cloud-amd64", Version: "6.1.119-1", Arch: "amd64"},
		{Name: "libssl3", Version: "3.0.14-1~deb12u2", Arch: "amd64"}, // went back
		{Name: "zstd", Version: "1.5.4+dfsg2-5", Arch: "amd64"},
		{Name: "libc6", Version: "2.36-9+deb12u9", Arch: "i386"},
	}
)

func TestDiffPackages(t *testing.T) {
	added, removed, changed := DiffPackages(bookworm5, bookworm8)
	names := func(ps []jobs.Package) (out []string) {
		for _, p := range ps {
			out = append(out, p.Name+":"+p.Arch)
		}
		return out
	}
	if got, want := names(added), []string{"libc6:i386", "linux-image-6.1.0-28-cloud-amd64:amd64", "zstd:amd64"}; !slices.Equal(got, want) {
		t.Errorf("added %q, want %q", got, want)
	}
	if got, want := names(removed), []string{"linux-image-6.1.0-18-cloud-amd64:amd64", "python3-six:all"}; !slices.Equal(got, want) {
		t.Errorf("removed %q, want %q", got, want)
	}
	want := []jobs.Upgrade{
		{Name: "libc6", Arch: "amd64", Before: "2.36-9+deb12u4", After: "2.36-9+deb12u9"},
		{Name: "libssl3", Arch: "amd64", Before: "3.0.15-1~deb12u1", After: "3.0.14-1~deb12u2", Downgrade: true},
		{Name: "systemd", Arch: "amd64", Before: "252.22-1~deb12u1", After: "252.33-1~deb12u1"},
	}
	if !slices.Equal(changed, want) {
		t.Errorf("changed %+v\nwant    %+v", changed, want)
	}
	if a, r, c := DiffPackages(bookworm8, bookworm8); a != nil || r != nil || c != nil {
		t.Errorf("a manifest against itself: %v %v %v", a, r, c)
	}
}

// result builds a result vetted at start whose SSH answered after boot, whose
// verdict came after total, with the given file size and manifest.
func result(id, release string, boot, total time.Duration, size int64, kernel string, pkgs []jobs.Package) jobs.Result {
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	r := jobs.Result{JobID: id, Verdict: jobs.VerdictPass, Accel: "tcg",
		Publish:    jobs.Publication{Family: "debian-12", Release: release},
		StartedAt:  start,
		FinishedAt: start.Add(total),
		Stages: []jobs.Stage{
			{Name: "fetch", Start: start, Duration: jobs.Duration(2 * time.Second)},
			{Name: "boot", Start: start.Add(3 * time.Second), Duration: jobs.Duration(time.Second)},
			{Name: "ssh", Start: start.Add(4 * time.Second), Duration: jobs.Duration(boot - time.Second)},
		},
		ImageFacts: &jobs.ImageFacts{Size: size, VirtualSize: 3 << 30, Format: "qcow2"},
	}
	if pkgs != nil {
		r.Inspection = &jobs.Inspection{Distro: "debian", Version: "12", Kernels: []string{kernel}, Packages: pkgs}
	}
	return r
}

func TestCompareThresholds(t *testing.T) {
	const mib = 1 << 20
	prev := result("debian-12-20260110-1", "20260110-1", 40*time.Second, 90*time.Second, 330*mib, "6.1.0-18-cloud-amd64", bookworm5)
	cases := []struct {
		name   string
		boot   time.Duration
		size   int64
		limits jobs.Regression
		accel  string
		want   []string // a substring of each regression, in order
	}{
		{"within the defaults", 50 * time.Second, 390 * mib, jobs.Regression{}, "tcg", nil},
		{"boot beyond 30 %", 53 * time.Second, 330 * mib, jobs.Regression{}, "tcg", []string{"boot time 40s → 53s (+32 %, beyond the family's 30 %)"}},
		{"size beyond 20 %", 40 * time.Second, 400 * mib, jobs.Regression{}, "tcg", []string{"image size 330.0 MiB → 400.0 MiB (+21 %, beyond the family's 20 %)"}},
		{"both", 60 * time.Second, 500 * mib, jobs.Regression{}, "tcg", []string{"image size", "boot time 40s → 1m0s (+50 %"}},
		{"the family allows more", 60 * time.Second, 500 * mib, jobs.Regression{BootPercent: 60, SizePercent: 60}, "tcg", nil},
		{"the family allows less", 42 * time.Second, 340 * mib, jobs.Regression{BootPercent: 4, SizePercent: 2}, "tcg", []string{"image size", "boot time"}},
		{"shrinking is no regression", 20 * time.Second, 100 * mib, jobs.Regression{BootPercent: 1, SizePercent: 1}, "tcg", nil},
		{"another acceleration is no boot regression", 90 * time.Second, 330 * mib, jobs.Regression{}, "kvm", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cur := result("debian-12-20261120-1", "20261120-1", c.boot, 2*time.Minute, c.size, "6.1.0-28-cloud-amd64", bookworm8)
			cur.Accel = c.accel
			ch := Compare(prev, cur, c.limits)
			if len(ch.Regressions) != len(c.want) || len(ch.Regressed) != len(c.want) {
				t.Fatalf("regressions %q (%q), want %d like %q", ch.Regressions, ch.Regressed, len(c.want), c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(ch.Regressions[i], w) {
					t.Errorf("regression %d %q lacks %q", i, ch.Regressions[i], w)
				}
			}
			if ch.BootBefore.D() != 40*time.Second || ch.BootAfter.D() != c.boot {
				t.Errorf("boot %s → %s, want 40s → %s", ch.BootBefore.D(), ch.BootAfter.D(), c.boot)
			}
		})
	}
}

func TestCompareRecordsWhatBothSidesHave(t *testing.T) {
	prev := result("debian-12-20260110-1", "20260110-1", 40*time.Second, 90*time.Second, 330<<20, "6.1.0-18-cloud-amd64", bookworm5)
	cur := result("debian-12-20261120-1", "20261120-1", 41*time.Second, 100*time.Second, 331<<20, "6.1.0-28-cloud-amd64", bookworm8)
	ch := Compare(prev, cur, jobs.Regression{})
	if ch.PreviousJob != "debian-12-20260110-1" || ch.PreviousVersion != "20260110-1" || !ch.PreviousAt.Equal(prev.FinishedAt) {
		t.Errorf("previous %s %s %s", ch.PreviousJob, ch.PreviousVersion, ch.PreviousAt)
	}
	if ch.KernelBefore != "6.1.0-18-cloud-amd64" || ch.KernelAfter != "6.1.0-28-cloud-amd64" {
		t.Errorf("kernel %s → %s", ch.KernelBefore, ch.KernelAfter)
	}
	if len(ch.Added) != 3 || len(ch.Removed) != 2 || len(ch.Upgraded) != 3 {
		t.Errorf("packages +%d -%d ~%d, want +3 -2 ~3", len(ch.Added), len(ch.Removed), len(ch.Upgraded))
	}
	if ch.SizeBefore != 330<<20 || ch.SizeAfter != 331<<20 || ch.VirtualSizeBefore != 3<<30 {
		t.Errorf("sizes %d → %d, virtual %d", ch.SizeBefore, ch.SizeAfter, ch.VirtualSizeBefore)
	}
	if ch.VerdictBefore.D() != 90*time.Second || ch.VerdictAfter.D() != 100*time.Second {
		t.Errorf("verdict %s → %s", ch.VerdictBefore.D(), ch.VerdictAfter.D())
	}

	// The previous release was vetted before the inspection existed, and its SSH
	// never answered: no manifest diff (not "every package added"), no boot time.
	old := prev
	old.Inspection = nil
	old.Stages[2].Error = "no SSH banner"
	ch = Compare(old, cur, jobs.Regression{})
	if ch.Added != nil || ch.Removed != nil || ch.Upgraded != nil || ch.KernelBefore != "" || ch.BootBefore != 0 || ch.BootAfter != 0 {
		t.Errorf("compared what one side lacks: %+v", ch)
	}
}

func TestAttachWarnsAndKeepsTheVerdict(t *testing.T) {
	prev := result("debian-12-20260110-1", "20260110-1", 40*time.Second, 90*time.Second, 330<<20, "6.1.0-18-cloud-amd64", bookworm5)
	cur := result("debian-12-20261120-1", "20261120-1", 60*time.Second, 100*time.Second, 331<<20, "", nil)
	cur.Warnings = []string{"an earlier warning"}
	Attach(&cur, prev, jobs.Regression{})
	if cur.Verdict != jobs.VerdictPass {
		t.Errorf("verdict %s", cur.Verdict)
	}
	if cur.Inspection == nil || cur.Inspection.Changes == nil || len(cur.Inspection.Changes.Regressions) != 1 {
		t.Fatalf("changes not attached: %+v", cur.Inspection)
	}
	want := "regression since 20260110-1: boot time 40s → 1m0s (+50 %, beyond the family's 30 %)"
	if !slices.Equal(cur.Warnings, []string{"an earlier warning", want}) {
		t.Errorf("warnings %q, want the earlier one and %q", cur.Warnings, want)
	}
}

// BenchmarkCompare: a Debian cloud image's manifest (about 450 packages) against
// the previous release's, a tenth of them upgraded.
func BenchmarkCompare(b *testing.B) {
	var before, after []jobs.Package
	for i := range 450 {
		p := jobs.Package{Name: fmt.Sprintf("lib%03d", i), Version: fmt.Sprintf("1:2.%d-9+deb12u4", i), Arch: "amd64"}
		before = append(before, p)
		if i%10 == 0 {
			p.Version = fmt.Sprintf("1:2.%d-9+deb12u7", i)
		}
		after = append(after, p)
	}
	prev := result("d12-1110", "20261110-1", 40*time.Second, 90*time.Second, 330<<20, "6.1.0-27-cloud-amd64", before)
	cur := result("d12-1120", "20261120-1", 41*time.Second, 92*time.Second, 331<<20, "6.1.0-28-cloud-amd64", after)
	for b.Loop() {
		if c := Compare(prev, cur, jobs.Regression{}); len(c.Upgraded) != 45 {
			b.Fatal(len(c.Upgraded))
		}
	}
}
