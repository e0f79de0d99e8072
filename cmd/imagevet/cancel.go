package main

import (
	"context"
	"fmt"
	"os"
	"os/user"

	"github.com/imagevet/imagevet/jobs"
)

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
	rest, err := parseCommand("cancel", cancelUsage, args, env, merged(nf.bind(), map[string]any{
		"by": &by, "reason": &reason, "json": &jsonOut}))
	if code, stop := flagStop(err); stop {
		return code
	}
	if err == nil && len(rest) != 1 {
		err = fmt.Errorf("want one JOB-ID, got %q (see imagevet cancel -h)", rest)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet cancel: %v\n", err)
		return exitError
	}
	id := rest[0]
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
