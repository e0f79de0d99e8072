package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/imagevet/imagevet/worker"
	"github.com/imagevet/imagevet/worker/daemon"

	"github.com/imagevet/imagevet/queue"
)

const workerUsage = `usage: imagevet worker [flags]

Serves jobs from NATS JetStream until SIGTERM/SIGINT: pulls one job per free slot,
admits it against free memory, boots and checks the image, publishes the result, then
acknowledges the job. Without --nats it starts an embedded JetStream server on
127.0.0.1 (--nats-port) with its data under the state directory. The queue flags
(--ack-wait, --max-deliver, --results-max-age, --replicas) apply only when this worker
finds no queue and sets it up; otherwise it follows the queue's settings (see
imagevet queue setup) and logs where its flags differ. A --nats server that is not
listening yet is waited for (backoff; /healthz on --metrics answers 503 saying so);
only a malformed URL or refused credentials end it.

`

// natsFlags are the NATS connection flags every NATS subcommand shares.
type natsFlags struct {
	urls, creds, nkey, ca, cert, key string
}

func (n *natsFlags) register(fs *flag.FlagSet, env Env, defaultURL string) {
	fs.StringVar(&n.urls, "nats", envOr(env, "IMAGEVET_NATS_URL", defaultURL), "NATS server URLs, comma-separated (IMAGEVET_NATS_URL)")
	fs.StringVar(&n.creds, "nats-creds", env.Getenv("IMAGEVET_NATS_CREDS"), "NATS credentials file (IMAGEVET_NATS_CREDS)")
	fs.StringVar(&n.nkey, "nats-nkey", env.Getenv("IMAGEVET_NATS_NKEY"), "NATS nkey seed file (IMAGEVET_NATS_NKEY)")
	fs.StringVar(&n.ca, "nats-ca", env.Getenv("IMAGEVET_NATS_TLS_CA"), "CA file verifying the NATS server (IMAGEVET_NATS_TLS_CA)")
	fs.StringVar(&n.cert, "nats-cert", env.Getenv("IMAGEVET_NATS_TLS_CERT"), "TLS client certificate (IMAGEVET_NATS_TLS_CERT)")
	fs.StringVar(&n.key, "nats-key", env.Getenv("IMAGEVET_NATS_TLS_KEY"), "TLS client key (IMAGEVET_NATS_TLS_KEY)")
}

func (n *natsFlags) options(name string) queue.ConnectOptions {
	return queue.ConnectOptions{URLs: queue.SplitURLs(n.urls), Name: name, CredsFile: n.creds,
		NKeySeedFile: n.nkey, TLSCAFile: n.ca, TLSCertFile: n.cert, TLSKeyFile: n.key}
}

// dialer returns what a service named name connects to NATS with: it waits for a
// server that is not up yet (see jobs.Dialer).
func (n *natsFlags) dialer(name string, log *slog.Logger) *queue.Dialer {
	o := n.options(name)
	o.Logger = log
	return &queue.Dialer{Options: o}
}

// connectService connects service cmd to NATS with d and opens the queue, waiting
// for a server that is not up yet and for a queue nobody has set up yet. When it
// should end instead it returns ok=false and its exit status: 0 when ctx ended while
// it waited (a stop), exitError with the reason on stderr otherwise (a
// jobs.ConnectError: bad URL, refused credentials).
func connectService(ctx context.Context, d *queue.Dialer, env Env, cmd string) (nc *nats.Conn, q *queue.Queue, code int, ok bool) {
	nc, err := d.Dial(ctx)
	if err == nil {
		if q, err = d.Open(ctx, nc); err != nil {
			nc.Close()
		}
	}
	switch {
	case err == nil:
		return nc, q, 0, true
	case ctx.Err() != nil:
		return nil, nil, 0, false
	}
	fmt.Fprintf(env.Stderr, "imagevet %s: %v\n", cmd, err)
	return nil, nil, exitError, false
}

// envFlags registers typed flags whose defaults come from IMAGEVET_* variables,
// remembering variables that do not parse.
type envFlags struct {
	fs    *flag.FlagSet
	env   Env
	errs  []error
	zeros []zeroCheck
}

// zeroCheck is a numeric flag whose zero the daemon would replace by a default.
type zeroCheck struct {
	name, envName, def string
	isZero             func() bool
}

// zeroRefused reports every int or duration flag with a non-zero default set
// to zero (by flag or variable): the daemon reads zero as "use the default", so
// an explicit zero would be silently replaced. A flag whose zero default means
// "unset" is refused when it is given (by flag or variable) as zero or less.
// Call it after parsing.
func (e *envFlags) zeroRefused() error {
	var errs []error
	given := map[string]bool{}
	e.fs.Visit(func(f *flag.Flag) { given["--"+f.Name] = true })
	for _, z := range e.zeros {
		switch {
		case z.def != "" && z.isZero():
			errs = append(errs, fmt.Errorf("%s (%s): 0 is not accepted; the default is %s", z.name, e.origin(z.envName, given[z.name]), z.def))
		case z.def == "" && (given[z.name] || e.env.Getenv(z.envName) != "") && z.isZero():
			errs = append(errs, fmt.Errorf("%s (%s): must be positive; leave it out to keep the default", z.name, e.origin(z.envName, given[z.name])))
		}
	}
	return errors.Join(errs...)
}

// origin names variable in an error about its value: the variable, and the
// configuration file's line when the value came from there (not when the flag
// was given).
func (e *envFlags) origin(variable string, flagGiven bool) string {
	if !flagGiven && e.env.Source != nil && e.env.Getenv(variable) != "" {
		if s := e.env.Source(variable); s != "environment" {
			return variable + " from " + s
		}
	}
	return variable
}

// badValue is the error of a variable's value v that does not parse: VAR="v": what,
// or FILE:LINE: VAR "v": what when the value came from the configuration file.
func (e *envFlags) badValue(variable, v, what string) error {
	if o := e.origin(variable, false); o != variable {
		return fmt.Errorf("%s: %s %q: %s", strings.TrimPrefix(o, variable+" from "), variable, v, what)
	}
	return fmt.Errorf("%s=%q: %s", variable, v, what)
}

// zeroAllowed exempts flag name (without dashes) from zeroRefused: for a flag
// whose zero means something of its own (watch --jitter 0: no spread).
func (e *envFlags) zeroAllowed(name string) {
	e.zeros = slices.DeleteFunc(e.zeros, func(z zeroCheck) bool { return z.name == "--"+name })
}

func (e *envFlags) intVar(p *int, name, envName string, def int, usage string) {
	if def != 0 {
		e.zeros = append(e.zeros, zeroCheck{name: "--" + name, envName: envName, def: strconv.Itoa(def), isZero: func() bool { return *p == 0 }})
	} else { // zero means "unset": refused only when given
		e.zeros = append(e.zeros, zeroCheck{name: "--" + name, envName: envName, isZero: func() bool { return *p <= 0 }})
	}
	if v := e.env.Getenv(envName); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.errs = append(e.errs, e.badValue(envName, v, "not an integer"))
		} else {
			def = n
		}
	}
	e.fs.IntVar(p, name, def, usage+" ("+envName+")")
}

func (e *envFlags) durationVar(p *time.Duration, name, envName string, def time.Duration, usage string) {
	if def != 0 {
		e.zeros = append(e.zeros, zeroCheck{name: "--" + name, envName: envName, def: def.String(), isZero: func() bool { return *p == 0 }})
	} else { // zero means "unset": refused only when given
		e.zeros = append(e.zeros, zeroCheck{name: "--" + name, envName: envName, isZero: func() bool { return *p <= 0 }})
	}
	if v := e.env.Getenv(envName); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			e.errs = append(e.errs, e.badValue(envName, v, "not a duration like 90s"))
		} else {
			def = d
		}
	}
	e.fs.DurationVar(p, name, def, usage+" ("+envName+")")
}

func (e *envFlags) boolVar(p *bool, name, envName string, usage string) {
	def := false
	if v := e.env.Getenv(envName); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.errs = append(e.errs, e.badValue(envName, v, "not true or false"))
		}
		def = b
	}
	e.fs.BoolVar(p, name, def, usage+" ("+envName+")")
}

func cmdWorker(ctx context.Context, args []string, env Env) int {
	wcfg := worker.DefaultConfig()
	var (
		dcfg     daemon.Config
		nf       natsFlags
		logLevel string
		logJSON  bool
	)
	fs := newFlagSet("worker", workerUsage, env)
	wcfg.RegisterFlags(fs, env.Getenv)
	nf.register(fs, env, "")
	ef := &envFlags{fs: fs, env: env}
	fs.StringVar(&dcfg.EmbeddedStoreDir, "nats-store", env.Getenv("IMAGEVET_NATS_STORE"), "embedded server data directory, default STATE-DIR/nats (IMAGEVET_NATS_STORE)")
	ef.intVar(&dcfg.EmbeddedPort, "nats-port", "IMAGEVET_NATS_PORT", daemon.DefaultEmbeddedPort, "embedded server port on 127.0.0.1")
	ef.intVar(&dcfg.Concurrency, "concurrency", "IMAGEVET_CONCURRENCY", daemon.DefaultConcurrency, "jobs run at once")
	ef.intVar(&dcfg.MemoryReserveMiB, "memory-reserve", "IMAGEVET_MEMORY_RESERVE_MIB", daemon.DefaultMemoryReserveMiB, "MiB of MemAvailable the host keeps for itself")
	ef.intVar(&dcfg.MemoryOverheadMiB, "memory-overhead", "IMAGEVET_MEMORY_OVERHEAD_MIB", daemon.DefaultMemoryOverheadMiB, "MiB added to each job's memory for the emulator")
	ef.durationVar(&dcfg.AdmissionHold, "admission-hold", "IMAGEVET_ADMISSION_HOLD", daemon.DefaultAdmissionHold, "how long a job waits for memory before it is handed back")
	ef.durationVar(&dcfg.GracePeriod, "grace", "IMAGEVET_GRACE", daemon.DefaultGracePeriod, "time running jobs get to finish on shutdown")
	var qcfg queue.Config
	queueFlags(ef, &qcfg)
	fs.StringVar(&dcfg.MetricsAddr, "metrics", env.Getenv("IMAGEVET_METRICS_ADDR"), "serve /metrics and /healthz here, e.g. 127.0.0.1:9464 (IMAGEVET_METRICS_ADDR)")
	fs.StringVar(&logLevel, "log-level", envOr(env, "IMAGEVET_LOG_LEVEL", "info"), "debug, info, warn or error (IMAGEVET_LOG_LEVEL)")
	ef.boolVar(&logJSON, "log-json", "IMAGEVET_LOG_JSON", "JSON logs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitError
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "imagevet worker: unexpected arguments %q\n", fs.Args())
		return exitError
	}
	errs := ef.errs
	errs = append(errs, wcfg.Validate(), ef.zeroRefused())
	dcfg.NATS = nf.options("")
	dcfg.WorkerID, dcfg.StateDir = wcfg.WorkerID, wcfg.StateDir
	dcfg.AckWait, dcfg.MaxDeliver, dcfg.ResultsMaxAge, dcfg.Replicas = qcfg.AckWait, qcfg.MaxDeliver, qcfg.ResultsMaxAge, qcfg.Replicas
	dcfg.Version, dcfg.Accel = buildVersion(), wcfg.Accel
	log, lerr := newLogger(env.Stderr, logLevel, logJSON)
	errs = append(errs, lerr)
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(env.Stderr, "imagevet worker: %v\n", err)
		return exitError
	}
	runner, closeRunner, err := newRunner(ctx, wcfg, log)
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet worker: %v\n", err)
		return exitError
	}
	defer closeRunner()
	// The acceleration is decided once, at start (auto probes KVM with a throw-away
	// guest), and announced with its reason in the heartbeat.
	if dcfg.Accel, dcfg.AccelReason, err = runner.Accel(ctx); err != nil {
		fmt.Fprintf(env.Stderr, "imagevet worker: accel: %v\n", err)
		return exitError
	}
	log.Info("acceleration", "accel", dcfg.Accel, "reason", dcfg.AccelReason)
	dm, err := daemon.New(dcfg, runner, daemon.WithLogger(log))
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet worker: %v\n", err)
		return exitError
	}
	if err := dm.Run(ctx); err != nil {
		log.Error("worker failed", "err", err)
		return exitError
	}
	return 0
}
