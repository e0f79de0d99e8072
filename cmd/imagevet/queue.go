package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/imagevet/imagevet/jobs"

	"github.com/imagevet/imagevet/queue"
)

const queueUsage = `usage: imagevet queue setup [flags]

Creates or updates the queue on a NATS server: the jobs and results streams, the
status, consoles, jobs and workers buckets and the shared worker consumer, and records
the settings every worker then follows. Workers never change an existing queue: they
adopt its settings and log where their own flags differ. Run it once per NATS
deployment, and again to change a setting; on a three-node cluster use --replicas 3.

`

func cmdQueue(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 || args[0] != "setup" {
		fmt.Fprint(env.Stderr, queueUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return 0
		}
		return exitError
	}
	var (
		nf      natsFlags
		cfg     queue.Config
		jsonOut bool
	)
	fs := newFlagSet("queue setup", queueUsage, env)
	nf.register(fs, env, defaultNATSURL)
	ef := &envFlags{fs: fs, env: env}
	queueFlags(ef, &cfg)
	fs.BoolVar(&jsonOut, "json", false, "print the settings as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitError
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "imagevet queue setup: unexpected arguments %q\n", fs.Args())
		return exitError
	}
	if err := errors.Join(append(ef.errs, cfg.Validate(), ef.zeroRefused())...); err != nil {
		fmt.Fprintf(env.Stderr, "imagevet queue setup: %v\n", err)
		return exitError
	}
	nc, err := queue.Connect(nf.options("imagevet queue setup"))
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet queue setup: %v\n", err)
		return exitError
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	q, err := queue.Setup(ctx, nc, cfg, "imagevet queue setup by "+whoAmI())
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet queue setup: %v\n", err)
		return exitError
	}
	if jsonOut {
		writeJSON(env.Stdout, q.Settings())
		return exitPass
	}
	printSettings(env.Stdout, q.Settings())
	return exitPass
}

// queueFlags registers the queue settings a first worker or `queue setup` applies.
// Zero means the jobs package's default when the queue is created.
func queueFlags(ef *envFlags, cfg *queue.Config) {
	ef.durationVar(&cfg.AckWait, "ack-wait", "IMAGEVET_ACK_WAIT", 0,
		fmt.Sprintf("redelivery timeout of a job without heartbeat (default %s)", queue.DefaultAckWait))
	ef.intVar(&cfg.MaxDeliver, "max-deliver", "IMAGEVET_MAX_DELIVER", 0,
		fmt.Sprintf("attempts of one job before a final error (default %d)", queue.DefaultMaxDeliver))
	ef.durationVar(&cfg.ResultsMaxAge, "results-max-age", "IMAGEVET_RESULTS_MAX_AGE", 0,
		fmt.Sprintf("how long results and console logs are kept (default %s)", queue.DefaultResultsMaxAge))
	ef.intVar(&cfg.Replicas, "replicas", "IMAGEVET_REPLICAS", 0,
		"replicas of every stream, bucket and the consumer: 3 on a three-node cluster (default 1)")
}

func printSettings(w io.Writer, s queue.Settings) {
	fmt.Fprintf(w, "queue settings (set by %s at %s):\n", s.SetBy, s.SetAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  ack wait %s, max deliver %d, dedupe window %s, results kept %s, replicas %d\n",
		s.AckWait.D(), s.MaxDeliver, s.DedupeWindow.D(), s.ResultsMaxAge.D(), s.Replicas)
}

// whoAmI names the operator in cancellations and settings: user@host.
func whoAmI() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	if host == "" {
		return name
	}
	return name + "@" + host
}

// openQueue connects and opens the queue for a client that only reads or submits,
// bounded by the returned context.
func openQueue(ctx context.Context, nf natsFlags, name string) (*queue.Queue, context.Context, func(), error) {
	nc, err := queue.Connect(nf.options(name))
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	q, err := queue.Open(ctx, nc)
	if err != nil {
		cancel()
		nc.Close()
		return nil, nil, nil, err
	}
	return q, ctx, func() { cancel(); nc.Close() }, nil
}

const jobsUsage = `usage: imagevet jobs [flags]

Lists the jobs in the queue, oldest first: queued, running (with the worker, attempt
and stage) or waiting to be retried, and the live workers with --workers.

`

func cmdJobs(ctx context.Context, args []string, env Env) int {
	var (
		nf               natsFlags
		jsonOut, workers bool
	)
	fs := newFlagSet("jobs", jobsUsage, env)
	nf.register(fs, env, defaultNATSURL)
	fs.BoolVar(&jsonOut, "json", false, "print as JSON")
	fs.BoolVar(&workers, "workers", false, "list the live workers instead")
	if err := parseInterleaved(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitError
	}
	if fs.NArg() > 0 {
		fs.Usage()
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
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tIMAGE\tSTATE\tATTEMPT\tWORKER\tSTAGE\tAGE\tNOTE")
	for _, j := range list {
		worker := orDash(j.Worker)
		if j.Worker != "" && !j.WorkerAlive {
			worker += " (no heartbeat)"
		}
		note := j.LastError
		if j.Rerun {
			note = strings.TrimSpace("rerun " + note)
		}
		if len(note) > 60 {
			note = note[:57] + "..."
		}
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
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tHOST\tSLOTS\tRUNNING\tACCEL\tVERSION\tUP\tLAST HEARTBEAT\tWHY ACCEL")
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

const cancelUsage = `usage: imagevet cancel [flags] JOB-ID

Stops a queued or running job: its result becomes an error saying who cancelled it
(unless a verdict was reported first, which stays), queued submissions are removed
and a worker running it destroys its machine. Exit status 0 cancelled, 1 the job had
already finished, 2 error.

`

func cmdCancel(ctx context.Context, args []string, env Env) int {
	var (
		nf         natsFlags
		by, reason string
		jsonOut    bool
	)
	fs := newFlagSet("cancel", cancelUsage, env)
	nf.register(fs, env, defaultNATSURL)
	fs.StringVar(&by, "by", envOr(env, "IMAGEVET_CANCEL_BY", whoAmI()), "who cancels, as the result shows (IMAGEVET_CANCEL_BY)")
	fs.StringVar(&reason, "reason", "", "why, as the result shows")
	fs.BoolVar(&jsonOut, "json", false, "print the outcome as JSON")
	if err := parseInterleaved(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitError
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitError
	}
	id := fs.Arg(0)
	if !jobs.ValidJobID(id) {
		fmt.Fprintf(env.Stderr, "imagevet cancel: invalid job id %q\n", id)
		return exitError
	}
	q, ctx, done, err := openQueue(ctx, nf, "imagevet cancel")
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet cancel: %v\n", err)
		return exitError
	}
	defer done()
	out, err := q.Cancel(ctx, id, by, reason)
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet cancel: %v\n", err)
		return exitError
	}
	if jsonOut {
		writeJSON(env.Stdout, out)
	} else if out.Cancelled {
		what := "queued"
		if out.WasRunning {
			what = "running; its worker was told to stop"
		}
		fmt.Fprintf(env.Stdout, "job %s cancelled (%s): %s\n", id, what, out.Result.Reason)
	} else {
		fmt.Fprintf(env.Stdout, "job %s had already finished: %s %s\n", id, out.Result.Verdict, out.Result.Reason)
	}
	if !out.Cancelled {
		return exitFail
	}
	return exitPass
}
