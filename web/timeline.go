package web

import (
	"fmt"
	"slices"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// Timeline geometry, in SVG user units.
const (
	tlWidth      = 960
	tlLabelWidth = 110
	tlLaneHeight = 22
	tlTop        = 8
	tlMarkRows   = 3
	tlMarkRow    = 16
	tlAxis       = 22
)

// Timeline is a job's stages and console marks laid out to scale for the SVG on the
// job page: each stage a bar in its own lane, each console mark a tick across all
// lanes with its label below.
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
	Class    string // ok, fail, error
	Duration time.Duration
	Error    string
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
}

// NewTimeline lays out a result's stages and console marks. anchors maps a console
// mark's index in r.ConsoleMarks to its line's id on the page.
func NewTimeline(r jobs.Result, anchors map[int]string) Timeline {
	start, end := r.StartedAt, r.FinishedAt
	stages := slices.Clone(r.Stages)
	slices.SortStableFunc(stages, func(a, b jobs.Stage) int { return a.Start.Compare(b.Start) })
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
	total := end.Sub(start)
	if total <= 0 {
		total = time.Second
	}
	chartW := float64(tlWidth - tlLabelWidth - 10)
	x := func(t time.Time) float64 {
		return float64(tlLabelWidth) + chartW*float64(t.Sub(start))/float64(total)
	}
	tl := Timeline{Width: tlWidth, ChartX: tlLabelWidth, Total: total}
	failed := map[string]string{}
	for _, c := range r.Checks {
		switch c.Status {
		case jobs.StatusFail:
			failed[c.Name] = "fail"
		case jobs.StatusError:
			failed[c.Name] = "error"
		}
	}
	for i, s := range stages {
		l := Lane{Name: s.Name, Y: tlTop + i*tlLaneHeight, X: x(s.Start), Duration: s.Duration.D(), Error: s.Error, Class: "ok"}
		l.W = max(x(s.Start.Add(s.Duration.D()))-l.X, 1.5)
		if c, ok := failed[s.Name]; ok {
			l.Class = c
		} else if s.Error != "" {
			l.Class = "error"
		}
		tl.Lanes = append(tl.Lanes, l)
	}
	tl.LanesBottom = tlTop + len(stages)*tlLaneHeight
	for i, m := range r.ConsoleMarks {
		tm := TimeMark{Name: m.Name, Reason: m.Reason, Line: m.Line, X: x(m.At), Class: m.Kind,
			At: m.At.Sub(start), Anchor: anchors[i]}
		tm.LabelLeft = tm.X > tlWidth*0.8
		tm.LabelY = tl.LanesBottom + tlMarkRow*(1+i%tlMarkRows)
		tl.Marks = append(tl.Marks, tm)
	}
	axisY := tl.LanesBottom + tlMarkRow*tlMarkRows + 8
	step := tickStep(total)
	for t := time.Duration(0); t <= total; t += step {
		tl.Ticks = append(tl.Ticks, Tick{X: x(start.Add(t)), Label: formatSeconds(t)})
	}
	tl.Height = axisY + tlAxis
	return tl
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
