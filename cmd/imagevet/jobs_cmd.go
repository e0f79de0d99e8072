package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/queue"
)

const jobsUsage = `usage: imagevet jobs [flags]

Lists the jobs in the queue, oldest first: queued, running (with the worker, attempt
and stage) or waiting to be retried, and the live workers with --workers.

`

func cmdJobs(ctx context.Context, args []string, env Env) int {
	var (
		nf               natsFlags
		jsonOut, workers bool
	)
	rest, err := parseCommand("jobs", jobsUsage, args, env, merged(nf.bind(), map[string]any{"json": &jsonOut, "workers": &workers}))
	if code, stop := flagStop(err); stop {
		return code
	}
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected arguments %q", rest)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet jobs: %v\n", err)
		return exitError
	}
	q, ctx, done, err := openQueue(ctx, nf, "imagevet jobs")
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet jobs: %v\n", err)
		return exitError
	}
	defer done()
	var (
		data  any
		print func()
	)
	now := time.Now()
	if workers {
		ws, err := q.Workers(ctx)
		data, print = ws, func() { printWorkers(env.Stdout, ws, now) }
		if err != nil {
			fmt.Fprintf(env.Stderr, "imagevet jobs: %v\n", err)
			return exitError
		}
	} else {
		list, err := q.Jobs(ctx)
		data, print = list, func() { printJobs(env.Stdout, list, now) }
		if err != nil {
			fmt.Fprintf(env.Stderr, "imagevet jobs: %v\n", err)
			return exitError
		}
	}
	if jsonOut {
		writeJSON(env.Stdout, data)
	} else {
		print()
	}
	return exitPass
}

func printJobs(w io.Writer, list []queue.QueueEntry, now time.Time) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no jobs queued or running")
		return
	}
	tw := newTable(w, "JOB\tIMAGE\tSTATE\tATTEMPT\tWORKER\tSTAGE\tAGE\tNOTE")
	for _, j := range list {
		worker := orDash(j.Worker)
		if j.Worker != "" && !j.WorkerAlive {
			worker += " (no heartbeat)"
		}
		note := j.LastError
		if j.Rerun {
			note = strings.TrimSpace("rerun " + note)
		}
		note = jobs.Bound(note, 60)
		attempt := "-"
		if j.Attempt > 0 {
			attempt = fmt.Sprint(j.Attempt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.JobID, orDash(j.Image), j.State, attempt, worker,
			orDash(j.Stage), now.Sub(j.SubmittedAt).Round(time.Second), orDash(note))
	}
	tw.Flush()
}

func printWorkers(w io.Writer, ws []queue.WorkerInfo, now time.Time) {
	if len(ws) == 0 {
		fmt.Fprintln(w, "no live workers")
		return
	}
	tw := newTable(w, "WORKER\tHOST\tSLOTS\tRUNNING\tACCEL\tVERSION\tUP\tLAST HEARTBEAT\tWHY ACCEL")
	for _, x := range ws {
		state := strings.Join(x.Running, ",")
		if x.Draining {
			state = strings.TrimSpace(state + " (draining)")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s ago\t%s\n", x.ID, x.Host, x.Slots, orDash(state), orDash(x.Accel),
			orDash(x.Version), now.Sub(x.StartedAt).Round(time.Second), now.Sub(x.Heartbeat).Round(time.Second), orDash(x.AccelReason))
	}
	tw.Flush()
}
