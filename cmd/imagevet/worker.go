package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
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

// natsFlags are the NATS connection settings every NATS subcommand shares.
type natsFlags struct {
	urls, creds, nkey, ca, cert, key string
}

// bind is where the NATS rows of the settings table go.
func (n *natsFlags) bind() map[string]any {
	return map[string]any{"nats": &n.urls, "nats-creds": &n.creds, "nats-nkey": &n.nkey, "nats-ca": &n.ca,
		"nats-cert": &n.cert, "nats-key": &n.key}
}

// vetBindings is where the worker's vetting settings go, which run shares.
func vetBindings(c *worker.Config) map[string]any {
	return map[string]any{"worker-id": &c.WorkerID, "state-dir": &c.StateDir, "libvirt-uri": &c.LibvirtURI,
		"accel": &c.Accel, "tcg-factor": &c.TCGFactor, "image-root": &c.ImageRoots, "cache-max": &c.CacheMax,
		"keyring": &c.Keyring, "domain-prefix": &c.DomainPrefix,
		"inspect": &c.Inspect, "inspect-timeout": &c.InspectTimeout,
		"max-fetch":      (*time.Duration)(&c.MaxTimeouts.Fetch),
		"max-boot":       (*time.Duration)(&c.MaxTimeouts.Boot),
		"max-cloud-init": (*time.Duration)(&c.MaxTimeouts.CloudInit),
		"max-command":    (*time.Duration)(&c.MaxTimeouts.Command),
		"max-total":      (*time.Duration)(&c.MaxTimeouts.Total)}
}

// logBindings is where the log settings go.
func logBindings(level *string, json *bool) map[string]any {
	m := map[string]any{"log-level": level}
	if json != nil {
		m["log-json"] = json
	}
	return m
}

// queueBindings is where the queue's settings go, which a first worker or
// queue setup applies.
func queueBindings(c *queue.Config) map[string]any {
	return map[string]any{"ack-wait": &c.AckWait, "max-deliver": &c.MaxDeliver, "results-max-age": &c.ResultsMaxAge,
		"replicas": &c.Replicas}
}

// merged is one map of the bindings of every part of a command.
func merged(parts ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, p := range parts {
		maps.Copy(out, p)
	}
	return out
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

func cmdWorker(ctx context.Context, args []string, env Env) int {
	wcfg := worker.DefaultConfig()
	var (
		dcfg     daemon.Config
		qcfg     queue.Config
		nf       natsFlags
		logLevel string
		logJSON  bool
	)
	rest, err := parseCommand("worker", workerUsage, args, env, merged(nf.bind(), vetBindings(&wcfg),
		queueBindings(&qcfg), logBindings(&logLevel, &logJSON), map[string]any{
			"nats-store": &dcfg.EmbeddedStoreDir, "nats-port": &dcfg.EmbeddedPort, "concurrency": &dcfg.Concurrency,
			"memory-reserve": &dcfg.MemoryReserveMiB, "memory-overhead": &dcfg.MemoryOverheadMiB,
			"admission-hold": &dcfg.AdmissionHold, "grace": &dcfg.GracePeriod, "metrics": &dcfg.MetricsAddr}))
	if code, stop := flagStop(err); stop {
		return code
	}
	errs := []error{err}
	if len(rest) > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", rest))
	}
	errs = append(errs, wcfg.Validate())
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
