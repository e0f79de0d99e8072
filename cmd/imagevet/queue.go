package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

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
