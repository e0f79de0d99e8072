package web

import (
	"fmt"
	"slices"
	"time"

	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/jobs"
)

// Timeline geometry, in SVG user units.
const (
	tlWidth      = 960
	tlLabelWidth = 110
	tlLaneHeight = 22
	tlTop        = 8
	tlMarkRow    = 16
	tlAxis       = 22
	// tlCharWidth is a generous width of one character of the 11 px label font,
	// tlLabelGap the room kept between two labels in a row.
	tlCharWidth = 7
	tlLabelGap  = 8
	// tlLaneChars bounds a lane's name, which must fit left of the chart.
	tlLaneChars = 15
)

// Timeline is a job's stages and console marks laid out to scale for the SVG on the
// job page: each stage a bar in its own lane, each console mark a tick across all
// lanes with its label below, in as many rows as keep the labels apart.
type Timeline struct {
	Width, Height int
	// ChartX is where the time axis starts; LanesBottom where the lanes end.
	ChartX, LanesBottom int
	Lanes               []Lane
	Marks               []TimeMark
	Ticks               []Tick
	Total               time.Duration
}

// Lane is one stage's bar.
type Lane struct {
	Name     string
	Y        int
	X, W     float64
	Class    string // ok, fail, error, running
	Duration time.Duration
	Error    string
	// Note says how the bar was drawn when it is not the stage's own timing (the
	// boot lasting until the guest was up).
	Note string
}

// TimeMark is a console mark on the time axis.
type TimeMark struct {
	Name, Reason, Line string
	X                  float64
	LabelY             int
	Class              string // milestone, fatal
	At                 time.Duration
	// Anchor is the console line's id on the page, when the tail still holds it.
	Anchor string
	// LabelLeft puts the label left of the tick, near the right edge.
	LabelLeft bool
}

// Tick is one labelled point of the time axis.
type Tick struct {
	X     float64
	Label string
	// End puts the label left of the tick, at the right edge.
	End bool
}

// label is a mark's label in the rows below the lanes: its tick at x, its text
// from..to, in row (0 the top one). Its tick line runs down through every row
// above its own.
type label struct {
	x, from, to float64
	row         int
}

// fits reports whether l can go in its row: clear of the labels there and not
// across the tick line of a label below. A row below every placed label always
// fits. (Its own line may cross a label above: two marks at one moment.)
func (l label) fits(placed []label) bool {
	for _, p := range placed {
		switch {
		case p.row == l.row && l.from < p.to+tlLabelGap && p.from < l.to+tlLabelGap:
			return false
		case p.row > l.row && p.x > l.from-2 && p.x < l.to+2:
			return false
		}
	}
	return true
}

// NewTimeline lays out a result's stages and console marks. anchors maps a console
// mark's index in r.ConsoleMarks to its line's id on the page.
func NewTimeline(r jobs.Result, anchors map[int]string) Timeline {
	stages := slices.Clone(r.Stages)
	slices.SortStableFunc(stages, func(a, b jobs.Stage) int { return a.Start.Compare(b.Start) })
	start, end := timelineSpan(r, stages)
	sc := newTimeScale(start, end)
	tl := Timeline{Width: tlWidth, ChartX: tlLabelWidth, Total: sc.total}
	ld := laneDrawer{sc: sc, end: end, ends: bootEnd(r, stages), failed: failedChecks(r), running: r.Verdict == ""}
	for i, s := range stages {
		tl.Lanes = append(tl.Lanes, ld.lane(i, s))
	}
	tl.LanesBottom = tlTop + len(stages)*tlLaneHeight
	marks, rows := sc.marks(r.ConsoleMarks, anchors, tl.LanesBottom)
	tl.Marks = marks
	tl.Ticks = sc.ticks()
	axisY := tl.LanesBottom + tlMarkRow*max(rows, 1) + 8
	tl.Height = axisY + tlAxis
	return tl
}

// timelineSpan is the time a timeline covers: from the job's start, or its first
// stage's when earlier, to its finish, or its last stage's end or console mark when
// later.
func timelineSpan(r jobs.Result, stages []jobs.Stage) (start, end time.Time) {
	start, end = r.StartedAt, r.FinishedAt
	for _, s := range stages {
		if start.IsZero() || s.Start.Before(start) {
			start = s.Start
		}
		if e := s.Start.Add(s.Duration.D()); e.After(end) {
			end = e
		}
	}
	for _, m := range r.ConsoleMarks {
		if m.At.After(end) {
			end = m.At
		}
	}
	return start, end
}

// tlChartWidth is the width of the chart right of the lanes' names.
const tlChartWidth = tlWidth - tlLabelWidth - 10

// timeScale places the moments of a job on the chart: start at its left edge,
// start+total at its right.
type timeScale struct {
	start time.Time
	total time.Duration
}

// newTimeScale spans start to end, or a second when that is not after start.
func newTimeScale(start, end time.Time) timeScale {
	total := end.Sub(start)
	if total <= 0 {
		total = time.Second
	}
	return timeScale{start: start, total: total}
}

// x is where t is on the chart.
func (sc timeScale) x(t time.Time) float64 {
	return float64(tlLabelWidth) + float64(tlChartWidth)*float64(t.Sub(sc.start))/float64(sc.total)
}

// failedChecks maps each check that did not pass to its lane's class: fail or
// error.
func failedChecks(r jobs.Result) map[string]string {
	failed := map[string]string{}
	for _, c := range r.Checks {
		switch c.Status {
		case jobs.StatusFail:
			failed[c.Name] = "fail"
		case jobs.StatusError:
			failed[c.Name] = "error"
		}
	}
	return failed
}

// laneDrawer draws a job's stages as lanes on its timeline's scale.
type laneDrawer struct {
	sc timeScale
	// end is where the timeline ends: a boot still going on lasts until then.
	end  time.Time
	ends bootEnds
	// failed maps a check that did not pass to its lane's class.
	failed map[string]string
	// running is set while the job has no verdict.
	running bool
}

// lane draws stage s in lane i. The boot lasts until the guest is up, and SSH's
// bar is what came after (the wait before was the boot); a running job's boot
// goes on while the guest is not up.
func (ld laneDrawer) lane(i int, s jobs.Stage) Lane {
	sc, ends := ld.sc, ld.ends
	l := Lane{Name: clip(s.Name, tlLaneChars), Y: tlTop + i*tlLaneHeight, X: sc.x(s.Start), Duration: s.Duration.D(), Error: s.Error}
	stop := s.Start.Add(s.Duration.D())
	switch {
	case s.Name == jobs.CheckBoot && ends.boot.After(stop):
		// The domain starts in a moment; the boot is over when the guest is up.
		l.Note = fmt.Sprintf("domain started in %s; %s at %s", formatDuration(s.Duration.D()), ends.why, formatDuration(ends.boot.Sub(sc.start)))
		l.Duration, stop = ends.boot.Sub(s.Start), ends.boot
	case s.Name == jobs.CheckSSH && ends.boot.After(s.Start) && ends.boot.Before(stop):
		// What SSH waited for until then was the boot, drawn on its own lane.
		l.Note = fmt.Sprintf("waited for the boot until %s, then %s more", formatDuration(ends.boot.Sub(sc.start)), formatDuration(stop.Sub(ends.boot)))
		l.X, l.Duration = sc.x(ends.boot), stop.Sub(ends.boot)
	}
	booting := s.Name == jobs.CheckBoot && ends.boot.IsZero() && ld.running && s.Error == ""
	if booting {
		// A running job whose guest is not up yet: the boot goes on.
		l.Note = "the console has not shown the end of boot yet"
		l.Duration, stop = ld.end.Sub(s.Start), ld.end
	}
	l.W = max(sc.x(stop)-l.X, 1.5)
	l.Class = laneClass(ld.failed[s.Name], s.Error, booting)
	return l
}

// laneClass is a lane's class: its check's failure class when the check did not
// pass, else error when the stage failed, running for a boot going on, else ok.
func laneClass(checkFailed, stageError string, booting bool) string {
	switch {
	case checkFailed != "":
		return checkFailed
	case stageError != "":
		return "error"
	case booting:
		return "running"
	}
	return "ok"
}

// marks places the console marks' ticks and their labels in rows below the lanes
// (which end at top), each label in the first row that keeps it apart from the
// others, turned left of its tick near the right edge. It returns the marks and
// the rows they take.
func (sc timeScale) marks(cms []jobs.ConsoleMark, anchors map[int]string, top int) ([]TimeMark, int) {
	var out []TimeMark
	var placed []label
	rows := 0
	for i, m := range cms {
		tm := TimeMark{Name: m.Name, Reason: m.Reason, Line: m.Line, X: sc.x(m.At), Class: m.Kind,
			At: m.At.Sub(sc.start), Anchor: anchors[i]}
		w := float64(len([]rune(m.Name))*tlCharWidth + 5)
		l := label{x: tm.X, from: tm.X - 3, to: tm.X + w}
		if l.to > tlWidth {
			tm.LabelLeft, l.from, l.to = true, tm.X-w, tm.X+3
		}
		for !l.fits(placed) {
			l.row++
		}
		placed = append(placed, l)
		rows = max(rows, l.row+1)
		tm.LabelY = top + tlMarkRow*(1+l.row)
		out = append(out, tm)
	}
	return out, rows
}

// ticks are the time axis' labelled points, a round step apart.
func (sc timeScale) ticks() []Tick {
	var out []Tick
	step := tickStep(sc.total)
	for t := time.Duration(0); t <= sc.total; t += step {
		tk := Tick{X: sc.x(sc.start.Add(t)), Label: formatSeconds(t)}
		tk.End = tk.X > tlWidth-20 // centred, the last label would leave the chart
		out = append(out, tk)
	}
	return out
}

// AxisY is the y of the time axis line.
func (t Timeline) AxisY() int { return t.Height - tlAxis }

// TickEnd is the y where tick marks end below the axis.
func (t Timeline) TickEnd() int { return t.AxisY() + 4 }

// tickStep picks a round step giving at most ten ticks over total.
func tickStep(total time.Duration) time.Duration {
	for _, s := range []time.Duration{
		100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
	} {
		if total/s <= 10 {
			return s
		}
	}
	return total / 10
}

func formatSeconds(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%gs", d.Round(100*time.Millisecond).Seconds())
	}
	return d.Round(time.Second).String()
}

// bootEnds is when the guest was up, as far as a result tells: the first console
// line of the end of boot, the guest answering SSH, or the fatal line that ended
// the boot; zero when none is known.
type bootEnds struct {
	boot time.Time
	why  string
}

func bootEnd(r jobs.Result, stages []jobs.Stage) bootEnds {
	var e bootEnds
	earlier := func(t time.Time, why string) {
		if !t.IsZero() && (e.boot.IsZero() || t.Before(e.boot)) {
			e.boot, e.why = t, why
		}
	}
	for _, m := range r.ConsoleMarks {
		switch {
		case m.Kind == jobs.MarkFatal:
			earlier(m.At, "the console's fatal line ("+m.Name+")")
		case slices.Contains(console.BootEndMilestones(), m.Name):
			earlier(m.At, "the console showed the end of boot ("+m.Name+")")
		}
	}
	if c := r.Check(jobs.CheckSSH); c != nil && c.Status == jobs.StatusPass {
		for _, s := range stages {
			if s.Name == jobs.CheckSSH {
				earlier(s.Start.Add(s.Duration.D()), "SSH answered")
			}
		}
	}
	return e
}

// clip shortens s to n characters, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
