package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"text/tabwriter"
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
	families    string
	once        bool
	metricsAddr string
	logLevel    string
	logJSON     bool
	jsonOut     bool
	watch       watch.Config
}

func cmdWatch(ctx context.Context, args []string, env Env) int {
	var c watchConfig
	fs := newFlagSet("watch", watchUsage, env)
	c.nats.register(fs, env, defaultNATSURL)
	ef := &envFlags{fs: fs, env: env}
	fs.StringVar(&c.catalog, "catalog", envOr(env, "IMAGEVET_CATALOG", "catalog"), "catalog file or directory (IMAGEVET_CATALOG)")
	fs.StringVar(&c.families, "family", env.Getenv("IMAGEVET_WATCH_FAMILIES"), "only these families, comma-separated keys (IMAGEVET_WATCH_FAMILIES)")
	ef.boolVar(&c.once, "once", "IMAGEVET_WATCH_ONCE", "poll every family once and exit")
	ef.durationVar(&c.watch.Interval, "interval", "IMAGEVET_WATCH_INTERVAL", watch.DefaultInterval, "time between two polls of a family")
	ef.durationVar(&c.watch.Jitter, "jitter", "IMAGEVET_WATCH_JITTER", watch.DefaultInterval/10, "random spread of each wait, ± (at most the interval)")
	ef.durationVar(&c.watch.Retry, "retry", "IMAGEVET_WATCH_RETRY", watch.DefaultRetry, "how soon a family whose feed failed is polled again")
	ef.durationVar(&c.watch.RequestTimeout, "request-timeout", "IMAGEVET_WATCH_REQUEST_TIMEOUT", feed.DefaultRequestTimeout, "bound on each feed request")
	ef.intVar(&c.watch.Attempts, "attempts", "IMAGEVET_WATCH_ATTEMPTS", watch.DefaultAttempts, "reads of a failing feed within one poll")
	ef.zeroAllowed("jitter")
	ef.intVar(&c.watch.Parallelism, "parallel", "IMAGEVET_WATCH_PARALLEL", watch.DefaultParallelism, "families polled at once")
	fs.StringVar(&c.metricsAddr, "metrics", env.Getenv("IMAGEVET_METRICS_ADDR"), "serve /metrics and /healthz here, e.g. 127.0.0.1:9465 (IMAGEVET_METRICS_ADDR)")
	fs.StringVar(&c.logLevel, "log-level", envOr(env, "IMAGEVET_LOG_LEVEL", "info"), "debug, info, warn or error (IMAGEVET_LOG_LEVEL)")
	ef.boolVar(&c.logJSON, "log-json", "IMAGEVET_LOG_JSON", "JSON logs")
	fs.BoolVar(&c.jsonOut, "json", false, "with --once, print the outcomes as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitError
	}
	errs := ef.errs
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	// A zero is refused on its own; the interval's bounds and the jitter's, which
	// depends on it, are judged only for values that were not zero.
	if zerr := ef.zeroRefused(); zerr != nil {
		errs = append(errs, zerr)
	} else {
		if c.watch.Interval < time.Minute {
			errs = append(errs, fmt.Errorf("--interval %s: at least 1m", c.watch.Interval))
		}
		if c.watch.Jitter < 0 || c.watch.Jitter >= c.watch.Interval {
			errs = append(errs, fmt.Errorf("--jitter %s: between 0 and the interval", c.watch.Jitter))
		}
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(env.Stderr, "imagevet watch: %v\n", err)
		return exitError
	}
	c.watch.CheckArtefact = true
	log, err := newLogger(env.Stderr, c.logLevel, c.logJSON)
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet watch: %v\n", err)
		return exitError
	}
	c.watch.Logger = log

	fams, err := catalog.Load(c.catalog)
	if err == nil && c.families != "" {
		fams, err = selectFamilies(fams, queue.SplitURLs(c.families))
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet watch: %v\n", err)
		return exitError
	}
	metrics := watch.NewMetrics()
	fail := func(err error) int {
		fmt.Fprintf(env.Stderr, "imagevet watch: %v\n", err)
		return exitError
	}
	var nc *nats.Conn
	var q *queue.Queue
	var health func() error
	if c.once { // a one-shot: no NATS is exit 2 at once
		if nc, err = queue.Connect(c.nats.options("imagevet watch")); err != nil {
			return fail(err)
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		q, err = queue.Open(octx, nc)
		cancel()
		if err != nil {
			nc.Close()
			return fail(err)
		}
		health = func() error {
			if !nc.IsConnected() {
				return fmt.Errorf("nats %s", nc.Status())
			}
			return nil
		}
	} else { // the service waits for its server, saying so on /healthz
		dialer := c.nats.dialer("imagevet watch", log)
		health = dialer.Health
		if c.metricsAddr != "" {
			stop, err := serveMetrics(c.metricsAddr, metrics.Handler(health))
			if err != nil {
				return fail(err)
			}
			defer stop()
		}
		var code int
		var ok bool
		if nc, q, code, ok = connectService(ctx, dialer, env, "watch"); !ok {
			return code
		}
	}
	defer nc.Close()
	if c.once && c.metricsAddr != "" {
		stop, err := serveMetrics(c.metricsAddr, metrics.Handler(health))
		if err != nil {
			return fail(err)
		}
		defer stop()
	}
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
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FAMILY\tSTATE\tRELEASE\tJOB\tREQUESTS\tTOOK\tERROR OR WARNING")
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
