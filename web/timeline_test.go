package web

import (
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// denseResult is a passing job whose console milestones come close together, as
// they did where the labels overlapped: initramfs and ssh-host-keys, the
// cloud-init ones, a late fatal line beside cloud-init-modules-final.
func denseResult() jobs.Result {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	st := func(name string, from, to float64) jobs.Stage {
		return jobs.Stage{Name: name, Start: at(from), Duration: jobs.Duration(at(to).Sub(at(from)))}
	}
	mark := func(kind, name string, s float64) jobs.ConsoleMark {
		return jobs.ConsoleMark{Kind: kind, Name: name, Reason: name, Line: name + " line", At: at(s)}
	}
	return jobs.Result{JobID: "dense", Verdict: jobs.VerdictPass, StartedAt: t0, FinishedAt: at(60),
		Stages: []jobs.Stage{st("fetch", 0, 1), st("prepare", 1, 2), st("boot", 2, 2.25), st("ssh", 2.25, 40),
			st("cloud-init", 40, 50), st("metadata", 40, 41), st("hostname", 50, 51), st("commands", 51, 58), st("cleanup", 58, 60)},
		Checks: []jobs.CheckResult{{Name: "ssh", Status: jobs.StatusPass}, {Name: "boot", Status: jobs.StatusPass},
			{Name: "commands", Status: jobs.StatusFail}},
		ConsoleMarks: []jobs.ConsoleMark{mark("milestone", "firmware", 2.4), mark("milestone", "bootloader", 2.6),
			mark("milestone", "kernel", 5), mark("milestone", "initramfs", 12), mark("milestone", "ssh-host-keys", 12.3),
			mark("milestone", "cloud-init-start", 30), mark("milestone", "cloud-init-finished", 30.5),
			mark("milestone", "login-prompt", 31), mark("milestone", "cloud-init-modules-final", 59.2),
			mark("fatal", "kernel-panic", 59.5)},
	}
}

// Labels laid out in rows never share space: by the widths the layout assumes,
// no two labels in one row overlap, and a label near the right edge stays inside.
func TestTimelineLabelsDoNotOverlap(t *testing.T) {
	tl := NewTimeline(denseResult(), nil)
	type box struct{ from, to float64 }
	byRow := map[int][]box{}
	for _, m := range tl.Marks {
		w := float64(len(m.Name) * tlCharWidth)
		b := box{m.X + 5, m.X + 5 + w}
		if m.LabelLeft {
			b = box{m.X - 5 - w, m.X - 5}
		}
		if b.to > tlWidth || b.from < tlLabelWidth-10 {
			t.Errorf("label %s at %.0f-%.0f leaves the chart", m.Name, b.from, b.to)
		}
		for _, o := range byRow[m.LabelY] {
			if b.from < o.to && o.from < b.to {
				t.Errorf("label %s overlaps another in row y=%d", m.Name, m.LabelY)
			}
		}
		byRow[m.LabelY] = append(byRow[m.LabelY], b)
	}
	if len(byRow) < 2 {
		t.Errorf("close marks all in %d row", len(byRow))
	}
	if axis := tl.AxisY(); axis <= tl.Marks[len(tl.Marks)-1].LabelY {
		t.Errorf("axis at %d above the labels", axis)
	}
}

// The boot lasts until the guest is up (the console's first end-of-boot line,
// here cloud-init finishing at 30.5 s), not the 0.25 s the domain took to start;
// SSH's bar is what came after; each check has its own bar and outcome.
func TestTimelineBootLastsUntilTheGuestIsUp(t *testing.T) {
	tl := NewTimeline(denseResult(), nil)
	lane := map[string]Lane{}
	for _, l := range tl.Lanes {
		lane[l.Name] = l
	}
	if d := lane["boot"].Duration; d != 28500*time.Millisecond {
		t.Errorf("boot lasts %s, want 28.5s (until cloud-init-finished)", d)
	}
	if lane["ssh"].X < lane["boot"].X+lane["boot"].W-1 || lane["ssh"].Duration != 9500*time.Millisecond {
		t.Errorf("ssh bar %+v does not start where the boot ends (%+v)", lane["ssh"], lane["boot"])
	}
	if lane["commands"].Class != "fail" || lane["metadata"].Class != "ok" || lane["cloud-init"].Class != "ok" {
		t.Errorf("checks' bars: %+v", tl.Lanes)
	}
	// The recorded panic: the boot ends at the fatal line, failed.
	r, _ := recordedPanic(t)
	tl = NewTimeline(r, nil)
	for _, l := range tl.Lanes {
		if l.Name == "boot" && (l.Class != "fail" || l.Duration < 30*time.Second) {
			t.Errorf("panicked boot lane %+v", l)
		}
	}
}

// Marks at one moment, many of them, still get rows (the layout ends).
func TestTimelineManyMarksAtOneMoment(t *testing.T) {
	r := denseResult()
	at := r.ConsoleMarks[0].At
	for i := range 30 {
		r.ConsoleMarks = append(r.ConsoleMarks, jobs.ConsoleMark{Kind: jobs.MarkMilestone, Name: "m", At: at.Add(time.Duration(i) * time.Millisecond)})
	}
	tl := NewTimeline(r, nil)
	if len(tl.Marks) != 40 || tl.AxisY() <= tl.Marks[39].LabelY {
		t.Errorf("%d marks, axis at %d", len(tl.Marks), tl.AxisY())
	}
}

// A lane's class: its check's failure first, then the stage's own error, then a
// boot going on.
func TestLaneClass(t *testing.T) {
	for _, c := range []struct {
		check, stageErr string
		booting         bool
		want            string
	}{
		{"", "", false, "ok"},
		{"fail", "", false, "fail"},
		{"error", "timed out", false, "error"},
		{"fail", "", true, "fail"},
		{"", "timed out", false, "error"},
		{"", "", true, "running"},
	} {
		if got := laneClass(c.check, c.stageErr, c.booting); got != c.want {
			t.Errorf("laneClass(%q, %q, %v) = %q, want %q", c.check, c.stageErr, c.booting, got, c.want)
		}
	}
}
