package guest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/imagevet/imagevet/jobs"
)

// Command is one of the job's own commands and what it must produce.
type Command struct {
	Run        string
	ExpectExit int
	// ExpectOutput must occur in stdout: a substring, or a regular expression
	// when written between slashes ("/^Linux /", multi-line mode).
	ExpectOutput string
	// Timeout bounds the command (0: only ctx).
	Timeout time.Duration
}

// outputMatcher compiles ExpectOutput.
func outputMatcher(expect string) (func(string) bool, error) {
	if len(expect) >= 2 && strings.HasPrefix(expect, "/") && strings.HasSuffix(expect, "/") {
		re, err := regexp.Compile("(?m)" + expect[1:len(expect)-1])
		if err != nil {
			return nil, err
		}
		return re.MatchString, nil
	}
	return func(s string) bool { return strings.Contains(s, expect) }, nil
}

// RunCommands runs cmds in order as the login user and passes when each exits
// with its ExpectExit and prints its ExpectOutput. It stops at the first failure,
// which the reason names; the detail has every command's exit status and output.
// An invalid expected-output regex is the job's fault: StatusError.
func RunCommands(ctx context.Context, r Runner, cmds []Command) CheckResult {
	start := time.Now()
	res := CheckResult{Name: NameCommands}
	var detail strings.Builder
	finish := func(s Status, reason string) CheckResult {
		res.Status, res.Reason, res.Detail, res.Duration = s, jobs.OneLine(reason, 400), strings.TrimSpace(detail.String()), time.Since(start)
		return res
	}
	if len(cmds) == 0 {
		return finish(StatusSkip, "the job has no commands")
	}
	for i, c := range cmds {
		label := fmt.Sprintf("command %d (%s)", i+1, shortCommand(c.Run))
		match, err := outputMatcher(c.ExpectOutput)
		if err != nil {
			res.Err = fmt.Errorf("%s: invalid expected output %q: %w", label, c.ExpectOutput, err)
			return finish(StatusError, res.Err.Error())
		}
		cctx, cancel := ctx, context.CancelFunc(func() {})
		if c.Timeout > 0 {
			cctx, cancel = context.WithTimeout(ctx, c.Timeout)
		}
		out, err := r.Run(cctx, c.Run)
		timedOut := cctx.Err() != nil && ctx.Err() == nil
		cancel()
		fmt.Fprintf(&detail, "$ %s\n", c.Run)
		if out.Stdout != "" {
			fmt.Fprintf(&detail, "%s\n", strings.TrimRight(out.Stdout, "\n"))
		}
		if out.Stderr != "" {
			fmt.Fprintf(&detail, "[stderr] %s\n", strings.TrimRight(out.Stderr, "\n"))
		}
		switch {
		case err != nil && (timedOut || errors.Is(err, context.DeadlineExceeded)):
			fmt.Fprintf(&detail, "[did not finish in %v]\n", out.Duration.Round(time.Millisecond))
			return finish(StatusFail, fmt.Sprintf("%s did not finish in time", label))
		case err != nil:
			res.Err = err
			return finish(StatusError, fmt.Sprintf("%s could not run: %v", label, err))
		}
		fmt.Fprintf(&detail, "[exit %d in %v]\n", out.ExitCode, out.Duration.Round(time.Millisecond))
		if out.ExitCode != c.ExpectExit {
			why := fmt.Sprintf("%s exited %d, want %d", label, out.ExitCode, c.ExpectExit)
			if tail := outputTail(out.Stderr); tail != "" {
				why += fmt.Sprintf("; stderr ends %q", tail)
			} else if tail := outputTail(out.Stdout); tail != "" {
				why += fmt.Sprintf("; stdout ends %q", tail)
			}
			return finish(StatusFail, why)
		}
		if c.ExpectOutput != "" && !match(out.Stdout) {
			got := "nothing"
			if tail := outputTail(out.Stdout); tail != "" {
				got = fmt.Sprintf("%q", tail)
			}
			return finish(StatusFail, fmt.Sprintf("%s output does not match %q (got %s)", label, c.ExpectOutput, got))
		}
	}
	return finish(StatusPass, fmt.Sprintf("%d commands gave the expected results", len(cmds)))
}

// Bounds of the output a failed command's reason quotes (the detail has all of it).
const (
	tailLines   = 5
	tailBytes   = 180
	commandShow = 50
)

// outputTail is the end of a command's output for a one-line reason: its last
// non-empty lines (at most tailLines, tailBytes), joined with " ⏎ ", cut at the
// front with "…" when longer. Errors are usually at the end of what a command says.
func outputTail(out string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	tail := strings.Join(lines, " ⏎ ")
	if len(tail) <= tailBytes {
		return tail
	}
	cut := len(tail) - tailBytes
	for cut < len(tail) && !utf8.RuneStart(tail[cut]) {
		cut++
	}
	return "…" + tail[cut:]
}

// shortCommand is a command line as a reason names it: one line, at most
// commandShow bytes, so the reason keeps room for what the command said.
func shortCommand(run string) string {
	run = strings.Join(strings.Fields(run), " ")
	if len(run) <= commandShow {
		return run
	}
	cut := commandShow
	for cut > 0 && !utf8.RuneStart(run[cut]) {
		cut--
	}
	return run[:cut] + "…"
}
