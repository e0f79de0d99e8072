package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/imagevet/imagevet/keyring"
	"github.com/imagevet/imagevet/watch"
	"github.com/imagevet/imagevet/watch/catalog"
	"github.com/imagevet/imagevet/watch/feed"

	"github.com/imagevet/imagevet/queue"
)

const watchUsage = `usage: imagevet watch [flags]

Follows the vendor feeds of every image family in the catalog (--catalog, a YAML file
or a directory of them; see catalog/README.md) and queues one job per new release.
Releases already seen are kept in the NATS bucket imagevet_releases, shared by every
watcher, and each release's job id is derived from the family, the version and the
digest, so reruns and concurrent watchers queue a release once.

Without --once it runs until SIGTERM/SIGINT, polling every --interval (±--jitter) and
retrying a family whose feed failed after --retry; --metrics serves /metrics and
/healthz. It waits for a NATS server that is not up yet (backoff, /healthz says so);
only a bad URL or refused credentials end it. With --once it polls every family once,
prints what it found and how long each took, and exits: 0 when every feed was read,
1 when some failed, 2 on a bad catalog or no NATS.

`

// watchConfig is everything `imagevet watch` is told.
type watchConfig struct {
	nats        natsFlags
	catalog     string
	families    []string
	once        bool
	metricsAddr string
	logLevel    string
	logJSON     bool
	jsonOut     bool
	watch       watch.Config
}

// parseWatch parses and validates watch's settings.
func parseWatch(args []string, env Env) (watchConfig, error) {
	var c watchConfig
	rest, err := parseCommand("watch", watchUsage, args, env, merged(c.nats.bind(), logBindings(&c.logLevel, &c.logJSON),
		map[string]any{"catalog": &c.catalog, "family": &c.families, "once": &c.once, "interval": &c.watch.Interval,
			"jitter": &c.watch.Jitter, "retry": &c.watch.Retry, "request-timeout": &c.watch.RequestTimeout,
			"attempts": &c.watch.Attempts, "parallel": &c.watch.Parallelism, "metrics": &c.metricsAddr, "json": &c.jsonOut}))
	if _, stop := flagStop(err); stop {
		return c, err
	}
	errs := []error{err}
	if len(rest) > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", rest))
	}
	// A refused value is reported on its own; the interval's bounds and the
	// jitter's, which depends on it, are judged only when every value was taken.
	if err == nil {
		if c.watch.Interval < time.Minute {
			errs = append(errs, fmt.Errorf("--interval %s: at least 1m", c.watch.Interval))
		}
		if c.watch.Jitter < 0 || c.watch.Jitter >= c.watch.Interval {
			errs = append(errs, fmt.Errorf("--jitter %s: between 0 and the interval", c.watch.Jitter))
		}
	}
	c.watch.CheckArtefact = true
	return c, errors.Join(errs...)
}

func cmdWatch(ctx context.Context, args []string, env Env) int {
	c, err := parseWatch(args, env)
	if code, stop := flagStop(err); stop {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(env.Stderr, "imagevet watch: %v\n", err)
		return exitError
	}
	if err != nil {
		return fail(err)
	}
	log, err := newLogger(env.Stderr, c.logLevel, c.logJSON)
	if err != nil {
		return fail(err)
	}
	c.watch.Logger = log
	fams, err := catalog.Load(c.catalog)
	if err == nil && len(c.families) > 0 {
		fams, err = selectFamilies(fams, c.families)
	}
	if err != nil {
		return fail(err)
	}
	metrics := watch.NewMetrics()
	q, stop, code, ok := c.connect(ctx, env, log, metrics)
	if !ok {
		return code
	}
	defer stop()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	w, err := watch.New(octx, c.watch, fams, q, loadKeyring, metrics)
	if err != nil {
		return fail(err)
	}
	if c.once {
		outcomes := w.Poll(ctx)
		printOutcomes(env, outcomes, c.jsonOut)
		for _, o := range outcomes {
			if o.State == watch.OutcomeFailed {
				return exitFail
			}
		}
		return exitPass
	}
	log.Info("watching", "families", len(fams), "interval", c.watch.Interval, "catalog", c.catalog)
	if err := w.Run(ctx); err != nil {
		log.Error("watch failed", "err", err)
		return exitError
	}
	return exitPass
}

// connect opens the queue and serves --metrics. A one-shot (--once) connects at
// once, no NATS being exit 2; the service waits for its server, saying so on
// /healthz, which it serves while it waits. stop closes both. When it should end
// instead it returns ok=false and its exit status, having said why.
func (c *watchConfig) connect(ctx context.Context, env Env, log *slog.Logger, metrics *watch.Metrics) (q *queue.Queue, stop func(), code int, ok bool) {
	fail := func(err error) (*queue.Queue, func(), int, bool) {
		fmt.Fprintf(env.Stderr, "imagevet watch: %v\n", err)
		return nil, nil, exitError, false
	}
	var nc *nats.Conn
	var health func() error
	stopMetrics := func() {}
	serve := func() error {
		if c.metricsAddr == "" {
			return nil
		}
		s, err := serveMetrics(c.metricsAddr, metrics.Handler(health))
		if err == nil {
			stopMetrics = s
		}
		return err
	}
	if c.once {
		var err error
		if nc, err = queue.Connect(c.nats.options("imagevet watch")); err != nil {
			return fail(err)
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		q, err = queue.Open(octx, nc)
		cancel()
		if err == nil {
			health = func() error {
				if !nc.IsConnected() {
					return fmt.Errorf("nats %s", nc.Status())
				}
				return nil
			}
			err = serve()
		}
		if err != nil {
			nc.Close()
			return fail(err)
		}
		return q, func() { stopMetrics(); nc.Close() }, 0, true
	}
	dialer := c.nats.dialer("imagevet watch", log)
	health = dialer.Health
	if err := serve(); err != nil {
		return fail(err)
	}
	if nc, q, code, ok = connectService(ctx, dialer, env, "watch"); !ok {
		stopMetrics()
		return nil, nil, code, false
	}
	return q, func() { nc.Close(); stopMetrics() }, 0, true
}

// selectFamilies keeps the named families; a name the catalog lacks is an error.
func selectFamilies(all []catalog.Family, keys []string) ([]catalog.Family, error) {
	byKey := make(map[string]catalog.Family, len(all))
	for _, f := range all {
		byKey[f.Key] = f
	}
	var out []catalog.Family
	for _, k := range keys {
		f, ok := byKey[k]
		if !ok {
			return nil, fmt.Errorf("--family %s: not in the catalog", k)
		}
		out = append(out, f)
	}
	return out, nil
}

func loadKeyring(path string) (feed.Verifier, error) { return keyring.Load(path) }

// serveMetrics serves h on addr until stop is called.
func serveMetrics(addr string, h http.Handler) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// outcomeJSON is one line of `watch --once --json`.
type outcomeJSON struct {
	Family      string  `json:"family"`
	State       string  `json:"state"`
	Release     string  `json:"release,omitempty"`
	JobID       string  `json:"job_id,omitempty"`
	Requests    int64   `json:"requests"`
	TookSeconds float64 `json:"took_seconds"`
	Warning     string  `json:"warning,omitempty"`
	Error       string  `json:"error,omitempty"`
}

func printOutcomes(env Env, outcomes []watch.Outcome, jsonOut bool) {
	if jsonOut {
		out := make([]outcomeJSON, 0, len(outcomes))
		for _, o := range outcomes {
			j := outcomeJSON{Family: o.Family, State: o.State, Release: o.Release, JobID: o.JobID, Requests: o.Requests,
				TookSeconds: o.Took.Round(time.Millisecond).Seconds(), Warning: o.Warning}
			if o.Err != nil {
				j.Error = o.Err.Error()
			}
			out = append(out, j)
		}
		writeJSON(env.Stdout, out)
		return
	}
	tw := newTable(env.Stdout, "FAMILY\tSTATE\tRELEASE\tJOB\tREQUESTS\tTOOK\tERROR OR WARNING")
	for _, o := range outcomes {
		msg := o.Warning
		if o.Err != nil {
			msg = o.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", o.Family, o.State, orDash(o.Release), orDash(o.JobID), o.Requests,
			o.Took.Round(10*time.Millisecond), orDash(msg))
	}
	tw.Flush()
}
