package main

import (
	"context"
	"errors"
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
	switch {
	case len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help"):
		args = []string{"setup", "-h"} // the help of its one subcommand, with its flags
	case len(args) == 0 || args[0] != "setup":
		fmt.Fprint(env.Stderr, queueUsage)
		return exitError
	}
	var (
		nf      natsFlags
		cfg     queue.Config
		jsonOut bool
	)
	rest, err := parseCommand("queue", queueUsage, args[1:], env, merged(nf.bind(), queueBindings(&cfg),
		map[string]any{"json": &jsonOut}))
	if code, stop := flagStop(err); stop {
		return code
	}
	errs := []error{err, cfg.Validate()}
	if len(rest) > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", rest))
	}
	if err := errors.Join(errs...); err != nil {
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
