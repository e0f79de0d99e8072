package main

import (
	"context"
	"encoding/json"
	"errors"
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

// submitFlags are what one imagevet submit is told beyond NATS.
type submitFlags struct {
	wait, jsonOut, quiet, rerun bool
	timeout                     time.Duration
	junitFile                   string
}

func cmdSubmit(ctx context.Context, args []string, env Env) int {
	var (
		nf natsFlags
		sf submitFlags
	)
	rest, err := parseCommand("submit", submitUsage, args, env, merged(nf.bind(), map[string]any{
		"wait": &sf.wait, "timeout": &sf.timeout, "junit": &sf.junitFile, "json": &sf.jsonOut, "quiet": &sf.quiet,
		"rerun": &sf.rerun}))
	if code, stop := flagStop(err); stop {
		return code
	}
	if err == nil && len(rest) != 1 {
		err = fmt.Errorf("want one JOB.json (or - for stdin), got %q (see imagevet submit -h)", rest)
	}
	var job jobs.Job
	if err == nil {
		job, err = readJobFile(rest[0], env.Stdin)
	}
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
	return sf.submit(ctx, opCtx, env, q, job)
}

// submit queues job (following its progress first with --wait, so no early
// event is missed), says so, and with --wait waits for its verdict.
func (sf submitFlags) submit(ctx, opCtx context.Context, env Env, q *queue.Queue, job jobs.Job) int {
	view := newProgressView(env.Stderr, sf.quiet || sf.jsonOut || !sf.wait)
	defer view.close()
	stopProgress := func() {}
	if sf.wait {
		var err error
		if stopProgress, err = q.FollowProgress(job.ID, view.event); err != nil {
			fmt.Fprintf(env.Stderr, "imagevet submit: %v\n", err)
			return exitError
		}
		defer stopProgress()
	}
	submit := q.Submit
	if sf.rerun {
		submit = q.Rerun
	}
	acc, err := submit(opCtx, job)
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet submit: %v\n", err)
		return exitError
	}
	switch {
	case sf.jsonOut:
	case acc.Duplicate:
		fmt.Fprintf(env.Stdout, "job %s already submitted (stream %s seq %d): not queued again\n", acc.JobID, acc.Stream, acc.Sequence)
	default:
		fmt.Fprintf(env.Stdout, "job %s accepted (stream %s seq %d)\n", acc.JobID, acc.Stream, acc.Sequence)
	}
	if !sf.wait {
		if sf.jsonOut {
			writeJSON(env.Stdout, submitOutput{Acceptance: acc})
		}
		return exitPass
	}
	waitCtx, cancelWait := context.WithTimeout(ctx, sf.timeout)
	defer cancelWait()
	res, err := q.WaitAfter(waitCtx, job.ID, acc.Replaces, nil)
	stopProgress()
	view.close()
	return sf.verdict(env, acc, res, err)
}

// verdict reports what waiting for a job's verdict gave and returns the exit
// status: the verdict's, exitTimeout after --timeout.
func (sf submitFlags) verdict(env Env, acc queue.Acceptance, res jobs.Result, err error) int {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(env.Stderr, "imagevet submit: no verdict for job %s after %s (still queued or running)\n", acc.JobID, sf.timeout)
		if sf.jsonOut {
			writeJSON(env.Stdout, submitOutput{Acceptance: acc, TimedOut: true})
		}
		return exitTimeout
	case err != nil:
		fmt.Fprintf(env.Stderr, "imagevet submit: %v\n", err)
		return exitError
	}
	if sf.junitFile != "" {
		if err := writeJUnitFile(sf.junitFile, res); err != nil {
			fmt.Fprintf(env.Stderr, "imagevet submit: junit: %v\n", err)
		}
	}
	if sf.jsonOut {
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
