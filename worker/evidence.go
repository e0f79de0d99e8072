package worker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/jobs"
)

// bootDetail summarises the console: milestones with their times, then warnings.
func bootDetail(con *console.Console) string {
	var b strings.Builder
	for _, m := range con.Milestones() {
		fmt.Fprintf(&b, "%7.1fs %s\n", m.Elapsed.Seconds(), m.Reason)
	}
	for _, w := range con.Warnings() {
		fmt.Fprintf(&b, "warning: %s\n", w.String())
	}
	return strings.TrimRight(b.String(), "\n")
}

// consoleMarks lists the console's milestones and its fatal line, if any, in the
// order they were read.
func consoleMarks(con *console.Console) []jobs.ConsoleMark {
	var marks []jobs.ConsoleMark
	add := func(kind string, m console.Match) {
		marks = append(marks, jobs.ConsoleMark{Kind: kind, Name: m.Check, Reason: m.Reason, Line: jobs.FirstLine(m.Line, 300), At: m.Time.UTC()})
	}
	for _, m := range con.Milestones() {
		add(jobs.MarkMilestone, m)
	}
	if m, ok := con.Fatal(); ok {
		add(jobs.MarkFatal, m)
	}
	slices.SortStableFunc(marks, func(a, b jobs.ConsoleMark) int { return a.At.Compare(b.At) })
	return marks
}
