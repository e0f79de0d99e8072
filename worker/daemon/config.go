// Package daemon is the long-running imagevet worker: it pulls jobs from NATS
// JetStream, admits them against the host's free memory, heartbeats them while a
// Runner vets each image, compares a family's verdict with the family's previous
// vetted release (changes.go), and reports the result before acknowledging the job.
package daemon

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/queue"
)

// Config holds every knob of the worker daemon. Zero fields take the defaults listed
// with them; Validate reports what cannot work.
type Config struct {
	// NATS says how to reach an external NATS server. With no URLs the daemon starts
	// an embedded JetStream server instead (single-host mode).
	NATS queue.ConnectOptions

	// StateDir holds the worker's state; the embedded server's store defaults to
	// StateDir/nats. Default /var/lib/imagevet.
	StateDir string
	// EmbeddedStoreDir overrides where the embedded server keeps its streams.
	EmbeddedStoreDir string
	// EmbeddedHost and EmbeddedPort are where the embedded server listens
	// (default 127.0.0.1:4222; port -1 picks a free one).
	EmbeddedHost string
	EmbeddedPort int

	// WorkerID names this worker in results, logs and metrics (default: the
	// hostname; one rule with the worker's: jobs.ValidWorkerID).
	WorkerID string
	// Concurrency is how many jobs run at once (default 1).
	Concurrency int
	// MemoryReserveMiB is memory the host keeps for itself: a job starts only if
	// MemAvailable minus this reserve, minus what running jobs were granted, covers
	// its machine memory plus MemoryOverheadMiB (default 1024).
	MemoryReserveMiB int
	// MemoryOverheadMiB is added to each job's machine.memory_mib for the emulator
	// itself (default 256).
	MemoryOverheadMiB int
	// AdmissionHold is how long a job that does not fit waits (heartbeating) for
	// running jobs to free memory before it is handed back (default 10 min).
	AdmissionHold time.Duration
	// AdmissionRetry is the delay a job handed back for lack of memory waits before
	// any worker sees it again (default 15 s).
	AdmissionRetry time.Duration

	// GracePeriod is how long running jobs may finish after shutdown starts before
	// they are cancelled and handed back (default 2 min).
	GracePeriod time.Duration
	// AckWait, MaxDeliver, ResultsMaxAge and Replicas apply only when this worker
	// is the first on an empty server and sets the queue up (defaults: the jobs
	// package's); otherwise the queue's settings (queue.Settings) are followed
	// and a difference is logged. Heartbeats go every AckWait/3; MaxDeliver bounds
	// the attempts of one job.
	AckWait    time.Duration
	MaxDeliver int
	Replicas   int
	// RetryDelays are the nak delays after the 1st, 2nd… retryable error; the last
	// repeats (default 10 s, 30 s, 90 s, 270 s).
	RetryDelays []time.Duration
	// FetchWait is how long one pull waits for a job (default 5 s); shutdown stops
	// pulling within it.
	FetchWait time.Duration
	// ResultsMaxAge is how long results and console logs are kept (default 90 days).
	ResultsMaxAge time.Duration

	// Version, Accel and AccelReason (why that accel: worker.Runner.Accel) are
	// announced in the worker's heartbeat entry.
	Version, Accel, AccelReason string

	// MetricsAddr serves /metrics and /healthz when set (e.g. "127.0.0.1:9464").
	MetricsAddr string
}

// Defaults.
const (
	DefaultStateDir          = "/var/lib/imagevet"
	DefaultEmbeddedHost      = "127.0.0.1"
	DefaultEmbeddedPort      = 4222
	DefaultConcurrency       = 1
	DefaultMemoryReserveMiB  = 1024
	DefaultMemoryOverheadMiB = 256
	DefaultAdmissionHold     = 10 * time.Minute
	DefaultAdmissionRetry    = 15 * time.Second
	DefaultGracePeriod       = 2 * time.Minute
	DefaultFetchWait         = 5 * time.Second
)

// DefaultRetryDelays are the nak delays for retryable errors.
var DefaultRetryDelays = []time.Duration{10 * time.Second, 30 * time.Second, 90 * time.Second, 270 * time.Second}

// WithDefaults returns a copy of c with every unset field filled in.
func (c Config) WithDefaults() Config {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.EmbeddedStoreDir == "" {
		c.EmbeddedStoreDir = filepath.Join(c.StateDir, "nats")
	}
	if c.EmbeddedHost == "" {
		c.EmbeddedHost = DefaultEmbeddedHost
	}
	if c.EmbeddedPort == 0 {
		c.EmbeddedPort = DefaultEmbeddedPort
	}
	if c.WorkerID == "" {
		c.WorkerID = jobs.DefaultWorkerID()
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MemoryReserveMiB == 0 {
		c.MemoryReserveMiB = DefaultMemoryReserveMiB
	}
	if c.MemoryOverheadMiB == 0 {
		c.MemoryOverheadMiB = DefaultMemoryOverheadMiB
	}
	if c.AdmissionHold == 0 {
		c.AdmissionHold = DefaultAdmissionHold
	}
	if c.AdmissionRetry == 0 {
		c.AdmissionRetry = DefaultAdmissionRetry
	}
	if c.GracePeriod == 0 {
		c.GracePeriod = DefaultGracePeriod
	}
	if len(c.RetryDelays) == 0 {
		c.RetryDelays = DefaultRetryDelays
	}
	if c.FetchWait == 0 {
		c.FetchWait = DefaultFetchWait
	}
	if c.NATS.Name == "" {
		c.NATS.Name = "imagevet-worker " + c.WorkerID
	}
	return c
}

// Validate reports every setting that cannot work (after defaults are applied).
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.NATS.URLs) > 0 {
		if err := c.NATS.Validate(); err != nil {
			errs = append(errs, err)
		}
	} else if c.EmbeddedPort < -1 || c.EmbeddedPort > 65535 {
		bad("embedded NATS port %d out of range", c.EmbeddedPort)
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		bad("concurrency %d: must be 1-256", c.Concurrency)
	}
	if c.MemoryReserveMiB < 0 || c.MemoryOverheadMiB < 0 {
		bad("memory reserve and overhead must not be negative")
	}
	if err := c.queueConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.FetchWait < 100*time.Millisecond || c.FetchWait > time.Minute {
		bad("fetch wait %s: must be 100ms-1m", c.FetchWait)
	}
	for _, d := range []time.Duration{c.GracePeriod, c.AdmissionHold, c.AdmissionRetry} {
		if d < 0 {
			bad("negative duration %s", d)
		}
	}
	for _, d := range c.RetryDelays {
		if d < 0 {
			bad("negative retry delay %s", d)
		}
	}
	if err := jobs.ValidWorkerID(c.WorkerID); err != nil {
		bad("worker id: %v", err)
	}
	return errors.Join(errs...)
}

func (c Config) queueConfig() queue.Config {
	return queue.Config{AckWait: c.AckWait, MaxDeliver: c.MaxDeliver, ResultsMaxAge: c.ResultsMaxAge, Replicas: c.Replicas}
}

// retryDelay is the nak delay after the given (1-based) attempt failed retryably.
func (c Config) retryDelay(attempt int) time.Duration {
	i := min(max(attempt-1, 0), len(c.RetryDelays)-1)
	return c.RetryDelays[i]
}
