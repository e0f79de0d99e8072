package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/imagevet/imagevet/jobs"
)

// progressView shows a job's live progress: on a terminal a status line that ticks
// the running stage's elapsed time, with finished stages above it; elsewhere plain
// timestamped lines.
type progressView struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	quiet   bool
	start   time.Time
	stage   string
	since   time.Time
	stop    chan struct{}
	stopped chan struct{}
}

func newProgressView(w io.Writer, quiet bool) *progressView {
	v := &progressView{w: w, quiet: quiet, start: time.Now(), stop: make(chan struct{}), stopped: make(chan struct{})}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		v.tty = true
	}
	if v.tty && !quiet {
		go v.tick()
	} else {
		close(v.stopped)
	}
	return v
}

func (v *progressView) tick() {
	defer close(v.stopped)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-v.stop:
			v.mu.Lock()
			fmt.Fprint(v.w, "\r\033[K")
			v.mu.Unlock()
			return
		case <-t.C:
			v.mu.Lock()
			if v.stage != "" {
				fmt.Fprintf(v.w, "\r\033[K  … %-10s %5.1fs", v.stage, time.Since(v.since).Seconds())
			}
			v.mu.Unlock()
		}
	}
}

func (v *progressView) event(p jobs.Progress) {
	if v.quiet || p.Event == jobs.EventConsole {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	elapsed := p.Time.Sub(v.start).Seconds()
	if !v.tty {
		line := fmt.Sprintf("[%6.1fs] %-10s %s", elapsed, p.Stage, p.Event)
		if p.Message != "" {
			line += ": " + p.Message
		}
		fmt.Fprintln(v.w, line)
		return
	}
	mark := map[string]string{"done": "✓", "pass": "✓", "fail": "✗", "error": "!", "skip": "-", "warn": "~", "info": "·"}[p.Event]
	switch p.Event {
	case "start":
		v.stage, v.since = p.Stage, p.Time
		return
	case "done", "fail":
		if p.Stage == v.stage {
			v.stage = ""
		}
	}
	line := fmt.Sprintf("\r\033[K%s %-10s %s", mark, p.Stage, p.Event)
	if p.Message != "" {
		line += ": " + p.Message
	}
	fmt.Fprintf(v.w, "%s  (%.1fs)\n", line, elapsed)
}

func (v *progressView) close() {
	select {
	case <-v.stop:
	default:
		close(v.stop)
	}
	<-v.stopped
}

// printResultTable prints a result for people.
func printResultTable(w io.Writer, r jobs.Result) {
	took := r.FinishedAt.Sub(r.StartedAt).Round(100 * time.Millisecond)
	fmt.Fprintf(w, "\njob %s: %s", r.JobID, strings.ToUpper(string(r.Verdict)))
	if r.FailedCheck != "" {
		fmt.Fprintf(w, " (%s: %s)", r.FailedCheck, r.Reason)
	}
	if r.Retryable {
		fmt.Fprint(w, " [retryable]")
	}
	fmt.Fprintf(w, "\nworker %s, attempt %d, accel %s, %s\n\n", r.Worker, r.Attempt, orDash(r.Accel), took)
	tw := newTable(w, "CHECK\tSTATUS\tREQUIRED\tTIME\tREASON")
	for _, c := range r.Checks {
		req := "yes"
		if !c.Required {
			req = "no"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, c.Status, req, c.Duration.D().Round(100*time.Millisecond), c.Reason)
	}
	tw.Flush()
	if r.Inspection != nil {
		fmt.Fprintf(w, "\ninspection: %s\n", r.Inspection.Summary())
	}
	printFindings(w, r.Inspection)
	printChanges(w, r.Inspection)
	if len(r.Stages) > 0 {
		fmt.Fprint(w, "\nstages:")
		for _, s := range r.Stages {
			fmt.Fprintf(w, " %s %s", s.Name, s.Duration.D().Round(10*time.Millisecond))
		}
		fmt.Fprintln(w)
	}
	if f := r.ImageFacts; f != nil {
		fmt.Fprintf(w, "\nimage: %s, %d bytes, virtual %d bytes\nsha256: %s\nsha512 (os_hash_value): %s\n", f.Format, f.Size, f.VirtualSize, f.SHA256, f.OSHashValue)
	}
	if r.Verdict != jobs.VerdictPass && r.ConsoleTail != "" {
		fmt.Fprintf(w, "\nconsole tail:\n%s\n", indent(r.ConsoleTail))
	}
	if r.ConsoleLog != "" {
		fmt.Fprintf(w, "\nconsole log: %s\n", r.ConsoleLog)
	}
	if k := r.Kept; k != nil {
		fmt.Fprintf(w, "\nmachine %s kept running for debugging:\n  %s\n  virsh destroy %s   # when done\n", k.Domain, k.SSHCommand, k.Domain)
	}
}

// printFindings lists the hygiene findings of the inspection, one file each.
func printFindings(w io.Writer, in *jobs.Inspection) {
	if in == nil || len(in.Findings) == 0 {
		return
	}
	fmt.Fprintln(w, "\nhygiene findings:")
	tw := newTable(w, "LEVEL\tRULE\tFILE\tDETAIL")
	for _, f := range in.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Level, f.Rule, orDash(f.Path), f.Detail)
	}
	tw.Flush()
}

// printChanges says in one line how the release differs from its family's previous
// vetted release, then each regression.
func printChanges(w io.Writer, in *jobs.Inspection) {
	if in == nil || in.Changes == nil {
		return
	}
	fmt.Fprintf(w, "\n%s\n", in.Changes.Summary())
	for _, r := range in.Changes.Regressions {
		fmt.Fprintf(w, "  regression: %s\n", r)
	}
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  | " + l
	}
	return strings.Join(lines, "\n")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// streamConsoleOf follows the console log of the job's machine to w until stopped.
// The job directory is created by the runner; the log appears once the guest starts.
func streamConsoleOf(ctx context.Context, stateDir, jobID string, w io.Writer) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var f *os.File
		for f == nil {
			matches, _ := filepath.Glob(filepath.Join(stateDir, "jobs", "*", jobID+"-*", "console.log"))
			if len(matches) > 0 {
				f, _ = os.Open(matches[len(matches)-1])
			}
			if f == nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
		defer f.Close()
		buf := make([]byte, 32*1024)
		for {
			n, _ := f.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// newTable starts one of the commands' tables on w: columns two spaces apart,
// header (tab-separated) first. The caller writes the rows and flushes.
func newTable(w io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}
