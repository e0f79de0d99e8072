package inspect

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// Compare says how cur differs from prev, the family's previous vetted release:
// the package manifest (added, removed, upgraded or downgraded, each sorted by name
// and architecture), the newest kernel, the image and virtual sizes, the boot time
// (BootTime) and the time to verdict, and the regressions beyond limits (zero
// thresholds take their defaults). A side that did not record something (no
// inspection, no SSH) leaves that comparison out: a release is never said to have
// added every package because the release before it had no manifest.
//
// Boot times are judged only between results vetted with the same acceleration: a
// release emulated (tcg) where the previous one ran under KVM is not a regression.
func Compare(prev, cur jobs.Result, limits jobs.Regression) *jobs.Changes {
	limits = limits.WithDefaults()
	c := &jobs.Changes{PreviousJob: prev.JobID, PreviousVersion: prev.Publish.Release, PreviousAt: prev.FinishedAt}
	pi, ci := prev.Inspection, cur.Inspection
	if pi != nil && ci != nil {
		if len(pi.Packages) > 0 && len(ci.Packages) > 0 {
			c.Added, c.Removed, c.Upgraded = DiffPackages(pi.Packages, ci.Packages)
		}
		if len(pi.Kernels) > 0 && len(ci.Kernels) > 0 {
			c.KernelBefore, c.KernelAfter = pi.Kernels[0], ci.Kernels[0]
		}
	}
	if prev.ImageFacts != nil && cur.ImageFacts != nil {
		c.SizeBefore, c.SizeAfter = prev.ImageFacts.Size, cur.ImageFacts.Size
		c.VirtualSizeBefore, c.VirtualSizeAfter = prev.ImageFacts.VirtualSize, cur.ImageFacts.VirtualSize
	}
	if before, after := BootTime(prev), BootTime(cur); before > 0 && after > 0 {
		c.BootBefore, c.BootAfter = jobs.Duration(before), jobs.Duration(after)
	}
	if before, after := VerdictTime(prev), VerdictTime(cur); before > 0 && after > 0 {
		c.VerdictBefore, c.VerdictAfter = jobs.Duration(before), jobs.Duration(after)
	}

	regress := func(measure, line string) {
		c.Regressions = append(c.Regressions, line)
		c.Regressed = append(c.Regressed, measure)
	}
	if grew, pct := beyond(c.SizeBefore, c.SizeAfter, limits.SizePercent); grew {
		regress(jobs.MeasureSize, fmt.Sprintf("image size %s → %s (+%d %%, beyond the family's %d %%)",
			jobs.HumanBytes(c.SizeBefore), jobs.HumanBytes(c.SizeAfter), pct, limits.SizePercent))
	}
	if grew, pct := beyond(c.VirtualSizeBefore, c.VirtualSizeAfter, limits.SizePercent); grew {
		regress(jobs.MeasureVirtualSize, fmt.Sprintf("virtual size %s → %s (+%d %%, beyond the family's %d %%)",
			jobs.HumanBytes(c.VirtualSizeBefore), jobs.HumanBytes(c.VirtualSizeAfter), pct, limits.SizePercent))
	}
	if sameAccel(prev, cur) {
		if grew, pct := beyond(int64(c.BootBefore), int64(c.BootAfter), limits.BootPercent); grew {
			regress(jobs.MeasureBoot, fmt.Sprintf("boot time %s → %s (+%d %%, beyond the family's %d %%)",
				roundTime(c.BootBefore.D()), roundTime(c.BootAfter.D()), pct, limits.BootPercent))
		}
	}
	return c
}

// Attach compares res with prev (Compare), keeps the changes on
// res.Inspection.Changes (making an Inspection that holds only them when the
// inspection did not run) and adds each regression to res.Warnings: the verdict
// stays what it was.
func Attach(res *jobs.Result, prev jobs.Result, limits jobs.Regression) {
	c := Compare(prev, *res, limits)
	if res.Inspection == nil {
		res.Inspection = &jobs.Inspection{}
	}
	res.Inspection.Changes = c
	for _, r := range c.Regressions {
		res.Warnings = append(res.Warnings, "regression since "+c.Previous()+": "+r)
	}
}

// beyond reports whether after exceeds before by more than limit percent, and by
// how many percent (rounded down) it grew.
func beyond(before, after int64, limit int) (bool, int) {
	if before <= 0 || after <= before {
		return false, 0
	}
	growth := float64(after-before) * 100 / float64(before)
	return growth > float64(limit), int(growth)
}

func sameAccel(a, b jobs.Result) bool {
	return a.Accel == "" || b.Accel == "" || a.Accel == b.Accel
}

func roundTime(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// BootTime is how long the result's guest took from the start of its domain (the
// "boot" stage) until SSH answered (the end of the "ssh" stage); zero when SSH
// never answered or the stages are missing.
func BootTime(r jobs.Result) time.Duration {
	var boot, ssh *jobs.Stage
	for i := range r.Stages {
		switch s := &r.Stages[i]; s.Name {
		case jobs.CheckBoot:
			boot = s
		case jobs.CheckSSH:
			ssh = s
		}
	}
	if boot == nil || ssh == nil || ssh.Error != "" {
		return 0
	}
	d := ssh.Start.Add(ssh.Duration.D()).Sub(boot.Start)
	return max(d, 0)
}

// VerdictTime is how long the job took from its start to its verdict.
func VerdictTime(r jobs.Result) time.Duration {
	if r.StartedAt.IsZero() || r.FinishedAt.IsZero() {
		return 0
	}
	return max(r.FinishedAt.Sub(r.StartedAt), 0)
}

// DiffPackages compares two package manifests by name and architecture: what after
// added, what it removed, and the packages whose version changed (Downgrade set
// where the version went back in Debian's order). Each list is sorted by name, then
// architecture.
func DiffPackages(before, after []jobs.Package) (added, removed []jobs.Package, changed []jobs.Upgrade) {
	type key struct{ name, arch string }
	old := make(map[key]jobs.Package, len(before))
	for _, p := range before {
		old[key{p.Name, p.Arch}] = p
	}
	seen := make(map[key]bool, len(after))
	for _, p := range after {
		k := key{p.Name, p.Arch}
		seen[k] = true
		o, ok := old[k]
		switch {
		case !ok:
			added = append(added, p)
		case o.Version != p.Version:
			changed = append(changed, jobs.Upgrade{Name: p.Name, Arch: p.Arch, Before: o.Version, After: p.Version,
				Downgrade: ComparePackageVersions(p.Version, o.Version) < 0})
		}
	}
	for _, p := range before {
		if !seen[key{p.Name, p.Arch}] {
			removed = append(removed, p)
		}
	}
	byPackage := func(a, b jobs.Package) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Arch, b.Arch))
	}
	slices.SortFunc(added, byPackage)
	slices.SortFunc(removed, byPackage)
	slices.SortFunc(changed, func(a, b jobs.Upgrade) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Arch, b.Arch))
	})
	return added, removed, changed
}

// ComparePackageVersions orders two package versions as dpkg does
// ([epoch:]upstream[-revision], '~' before anything, letters before other
// characters): negative when a is older than b, zero when equal, positive when
// newer. RPM versions compare close enough to it for telling an upgrade from a
// downgrade. (Vendor release versions, which have no epoch and no tilde, are
// ordered by watch/feed's CompareVersions.)
func ComparePackageVersions(a, b string) int {
	ea, ua, ra := splitVersion(a)
	eb, ub, rb := splitVersion(b)
	if ea != eb {
		return cmp.Compare(ea, eb)
	}
	if c := compareFragment(ua, ub); c != 0 {
		return c
	}
	return compareFragment(ra, rb)
}

// splitVersion splits [epoch:]upstream[-revision]; an epoch that is not a number
// is left in the upstream part.
func splitVersion(v string) (epoch int, upstream, revision string) {
	if e, rest, ok := strings.Cut(v, ":"); ok {
		if n, err := strconv.Atoi(e); err == nil && n >= 0 {
			epoch, v = n, rest
		}
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

// compareFragment is dpkg's verrevcmp: alternating runs of non-digits (compared
// character by character in order's ranking) and digits (compared as numbers).
func compareFragment(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var c int
		if i, j, c = compareNonDigits(a, b, i, j); c != 0 {
			return c
		}
		if i, j, c = compareDigits(a, b, i, j); c != 0 {
			return c
		}
	}
	return 0
}

// compareNonDigits compares the runs of non-digits that start at a[i] and b[j],
// character by character in order's ranking (the shorter run's end ranks as 0),
// and returns where the runs end and the comparison.
func compareNonDigits(a, b string, i, j int) (int, int, int) {
	at := func(s string, i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
		if ac, bc := order(at(a, i)), order(at(b, j)); ac != bc {
			return i, j, cmp.Compare(ac, bc)
		}
		i++
		j++
	}
	return i, j, 0
}

// compareDigits compares the runs of digits that start at a[i] and b[j] as numbers
// (leading zeros skipped; the longer number is the greater, else the first digit
// that differs decides) and returns where the runs end and the comparison.
func compareDigits(a, b string, i, j int) (int, int, int) {
	for i < len(a) && a[i] == '0' {
		i++
	}
	for j < len(b) && b[j] == '0' {
		j++
	}
	firstDiff := 0
	for i < len(a) && j < len(b) && isDigit(a[i]) && isDigit(b[j]) {
		if firstDiff == 0 {
			firstDiff = cmp.Compare(a[i], b[j])
		}
		i++
		j++
	}
	switch {
	case i < len(a) && isDigit(a[i]):
		return i, j, 1
	case j < len(b) && isDigit(b[j]):
		return i, j, -1
	}
	return i, j, firstDiff
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// order ranks one character of a version's non-digit run: '~' first, then the end
// of the run (and digits), then letters, then everything else.
func order(c byte) int {
	switch {
	case c == '~':
		return -1
	case c == 0, c >= '0' && c <= '9':
		return 0
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return int(c)
	default:
		return int(c) + 256
	}
}
