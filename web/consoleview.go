package web

import (
	"fmt"
	"strings"

	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/jobs"
)

// ConsoleLine is one line of the console tail as the job page shows it.
type ConsoleLine struct {
	ID   string // anchor, "L<n>"
	Num  int
	Text string
	// Class is "fatal" for the line that failed the job, "milestone" for the first
	// line of a boot milestone, else empty; Mark names the milestone or fatal check.
	Class, Mark string
}

// consoleView splits a console log (the whole log, or the result's tail) into
// cleaned lines and finds the result's console marks in it. It returns the lines
// and, per index into r.ConsoleMarks, the anchor of the line that holds the mark.
func consoleView(r jobs.Result, log string) ([]ConsoleLine, map[int]string) {
	log = strings.TrimRight(log, "\r\n")
	if log == "" {
		return nil, nil
	}
	raw := strings.Split(log, "\n")
	lines := make([]ConsoleLine, len(raw))
	for i, l := range raw {
		lines[i] = ConsoleLine{ID: fmt.Sprintf("L%d", i+1), Num: i + 1, Text: console.Clean(l)}
	}
	anchors := map[int]string{}
	fatalSeen := false
	for mi, m := range r.ConsoleMarks {
		// Milestones are first matches: the earliest such line. The fatal line is the
		// one that ended the job: the latest.
		i := findLine(lines, m.Line, m.Kind == jobs.MarkFatal)
		if i < 0 {
			continue
		}
		if m.Kind == jobs.MarkFatal {
			fatalSeen = true
		}
		if lines[i].Class != "fatal" {
			lines[i].Class, lines[i].Mark = m.Kind, m.Name
		}
		anchors[mi] = lines[i].ID
	}
	if !fatalSeen && r.FailedCheck == jobs.CheckBoot {
		// Results without console marks: the boot reason is "reason: line".
		if _, line, ok := strings.Cut(r.Reason, ": "); ok {
			if i := findLine(lines, line, true); i >= 0 {
				lines[i].Class, lines[i].Mark = jobs.MarkFatal, r.FailedCheck
			}
		}
	}
	return lines, anchors
}

// findLine returns the index of the first (or last) line holding want, or -1.
func findLine(lines []ConsoleLine, want string, last bool) int {
	want = strings.TrimSuffix(strings.TrimSpace(want), "...")
	want = strings.TrimSuffix(want, "…")
	if want == "" {
		return -1
	}
	for k := range lines {
		i := k
		if last {
			i = len(lines) - 1 - k
		}
		if strings.Contains(lines[i].Text, want) {
			return i
		}
	}
	return -1
}
