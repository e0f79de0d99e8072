package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/imagevet/imagevet/jobs"

	"github.com/imagevet/imagevet/queue"
)

const submitUsage = `usage: imagevet submit [flags] JOB.json

Queues a job (JOB.json, or - for stdin) with its id as the message id: submitting the
same job again is a no-op (--rerun vets it again on purpose, as a new attempt). Prints the acceptance; with --wait follows the job's
progress and prints its verdict. A job that already has a result is answered at once.
Exit status: 0 submitted or pass, 1 fail, 2 error, 3 timeout.

`

// defaultNATSURL is where a single-host worker's embedded server listens.
const defaultNATSURL = "nats://127.0.0.1:4222"

func cmdSubmit(ctx context.Context, args []string, env Env) int {
	var (
		nf                natsFlags
		wait, jsonOut, qt bool
		rerun             bool
		timeout           time.Duration
		junitFile         string
	)
	fs := newFlagSet("submit", submitUsage, env)
	nf.register(fs, env, defaultNATSURL)
	ef := &envFlags{fs: fs, env: env}
	fs.BoolVar(&wait, "wait", false, "wait for the verdict, following progress")
	ef.durationVar(&timeout, "timeout", "IMAGEVET_SUBMIT_TIMEOUT", time.Hour, "with --wait, give up (exit 3) after this long")
	fs.StringVar(&junitFile, "junit", "", "with --wait, write a JUnit XML report to this file")
	fs.BoolVar(&jsonOut, "json", false, "print the acceptance and result as JSON")
	fs.BoolVar(&qt, "quiet", false, "no progress lines")
	fs.BoolVar(&rerun, "rerun", false, "vet the job again although it has a result; the new result replaces it as the next attempt")
	if err := parseInterleaved(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitError
	}
	if err := errors.Join(append(ef.errs, ef.zeroRefused())...); err != nil {
		fmt.Fprintf(env.Stderr, "imagevet submit: %v\n", err)
		return exitError
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitError
	}
	job, err := readJobFile(fs.Arg(0), env.Stdin)
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet submit: %v\n", err)
		return exitError
	}

	q, opCtx, done, err := openQueue(ctx, nf, "imagevet submit")
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet submit: %v\n", err)
		return exitError
	}
	defer done()
	view := newProgressView(env.Stderr, qt || jsonOut || !wait)
	defer view.close()
	stopProgress := func() {}
	if wait {
		// Follow before submitting so no early event is missed.
		stopProgress, err = q.FollowProgress(job.ID, view.event)
		if err != nil {
			fmt.Fprintf(env.Stderr, "imagevet submit: %v\n", err)
			return exitError
		}
		defer stopProgress()
	}
	submit := q.Submit
	if rerun {
		submit = q.Rerun
	}
	acc, err := submit(opCtx, job)
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet submit: %v\n", err)
		return exitError
	}
	if !jsonOut {
		if acc.Duplicate {
			fmt.Fprintf(env.Stdout, "job %s already submitted (stream %s seq %d): not queued again\n", acc.JobID, acc.Stream, acc.Sequence)
		} else {
			fmt.Fprintf(env.Stdout, "job %s accepted (stream %s seq %d)\n", acc.JobID, acc.Stream, acc.Sequence)
		}
	}
	if !wait {
		if jsonOut {
			writeJSON(env.Stdout, submitOutput{Acceptance: acc})
		}
		return exitPass
	}

	waitCtx, cancelWait := context.WithTimeout(ctx, timeout)
	defer cancelWait()
	res, err := q.WaitAfter(waitCtx, job.ID, acc.Replaces, nil)
	stopProgress()
	view.close()
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(env.Stderr, "imagevet submit: no verdict for job %s after %s (still queued or running)\n", job.ID, timeout)
		if jsonOut {
			writeJSON(env.Stdout, submitOutput{Acceptance: acc, TimedOut: true})
		}
		return exitTimeout
	case err != nil:
		fmt.Fprintf(env.Stderr, "imagevet submit: %v\n", err)
		return exitError
	}
	if junitFile != "" {
		if err := writeJUnitFile(junitFile, res); err != nil {
			fmt.Fprintf(env.Stderr, "imagevet submit: junit: %v\n", err)
		}
	}
	if jsonOut {
		writeJSON(env.Stdout, submitOutput{Acceptance: acc, Result: &res})
	} else {
		printResultTable(env.Stdout, res)
	}
	return exitCode(res.Verdict)
}

// submitOutput is what submit --json prints.
type submitOutput struct {
	Acceptance queue.Acceptance `json:"acceptance"`
	Result     *jobs.Result     `json:"result,omitempty"`
	TimedOut   bool             `json:"timed_out,omitempty"`
}

func writeJSON(w io.Writer, v any) {
	data, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(data))
}

// readJobFile reads and strictly decodes a job from a file, or stdin for "-".
func readJobFile(path string, stdin io.Reader) (jobs.Job, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return jobs.Job{}, err
		}
		defer f.Close()
		r = f
	} else if stdin == nil {
		return jobs.Job{}, errors.New("no standard input")
	}
	job, err := jobs.ReadJob(r)
	if err != nil {
		return jobs.Job{}, fmt.Errorf("%s: %w", path, err)
	}
	return job, nil
}

// parseInterleaved parses flags that may come after positional arguments too
// ("submit job.json --wait").
func parseInterleaved(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}
