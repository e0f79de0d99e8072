package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS names shared by submitters, workers and publishers. See ARCHITECTURE.md, "NATS layout".
const (
	// SubjectSubmit is where jobs are submitted; any subject under SubjectJobs works.
	SubjectSubmit = "imagevet.jobs.submit"
	// SubjectJobs matches every job subject.
	SubjectJobs = "imagevet.jobs.>"
	// SubjectResults matches every result subject.
	SubjectResults = "imagevet.results.>"
	// StreamJobs is the work-queue stream holding submitted jobs until a worker acks them.
	StreamJobs = "IMAGEVET_JOBS"
	// StreamResults holds the final result of every job, one subject per job id.
	StreamResults = "IMAGEVET_RESULTS"
	// ConsumerWorkers is the one durable pull consumer all workers share.
	ConsumerWorkers = "imagevet-workers"
	// BucketStatus is the KV bucket holding the latest result per image name.
	BucketStatus = "imagevet_status"
	// BucketConsoles is the object store bucket holding full console logs by job id.
	BucketConsoles = "imagevet_consoles"
)

// Queue defaults.
const (
	DefaultAckWait       = 90 * time.Second
	DefaultMaxDeliver    = 5
	DefaultDedupeWindow  = 2 * time.Hour
	DefaultResultsMaxAge = 90 * 24 * time.Hour
	// MaxConsoleTail bounds Result.ConsoleTail as published; the whole log goes to
	// BucketConsoles.
	MaxConsoleTail = 16 << 10
)

// ResultSubject is the subject a job's final result is published on.
func ResultSubject(jobID string) string { return "imagevet.results." + jobID }

// ProgressSubject is the (core NATS, not persisted) subject a job's progress events go to.
func ProgressSubject(jobID string) string { return "imagevet.progress." + jobID }

// ValidJobID reports whether id is a well-formed job id, safe as a subject token.
func ValidJobID(id string) bool { return idPattern.MatchString(id) }

// ConsoleRef is what Result.ConsoleLog holds once the full log is in BucketConsoles.
func ConsoleRef(jobID string) string { return "nats-object://" + BucketConsoles + "/" + jobID }

// StatusKey turns an image name (publish.name) into its key in BucketStatus. Names that
// are already valid keys are kept; others have invalid characters replaced and a short
// digest of the name appended so distinct names never share a key.
func StatusKey(name string) string {
	var b strings.Builder
	changed := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '=':
			b.WriteByte(c)
		case c == '.' && i > 0 && i < len(name)-1 && name[i-1] != '.':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
			changed = true
		}
	}
	if name == "" || changed || b.Len() > 200 {
		sum := sha256.Sum256([]byte(name))
		s := b.String()
		if len(s) > 200 {
			s = s[:200]
		}
		return s + "_" + hex.EncodeToString(sum[:4])
	}
	return b.String()
}

// QueueConfig tunes the streams and the shared consumer. Zero fields take the defaults.
type QueueConfig struct {
	// AckWait is how long a delivered job may go without an ack or heartbeat before
	// the server gives it to another worker.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one job, retries included.
	MaxDeliver int
	// DedupeWindow is how long a resubmitted job id is dropped by the server (>= 1 h).
	DedupeWindow time.Duration
	// ResultsMaxAge is how long results and console logs are kept.
	ResultsMaxAge time.Duration
	// Replicas is the stream replica count on a clustered server (default 1).
	Replicas int
}

func (c QueueConfig) withDefaults() QueueConfig {
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.DedupeWindow < time.Hour {
		c.DedupeWindow = DefaultDedupeWindow
	}
	if c.ResultsMaxAge <= 0 {
		c.ResultsMaxAge = DefaultResultsMaxAge
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return c
}

// Queue is a handle on imagevet's streams and buckets. It is safe for concurrent use.
type Queue struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	results  jetstream.Stream
	status   jetstream.KeyValue
	consoles jetstream.ObjectStore
}

// SetupQueue creates or updates the jobs and results streams and the status and
// console buckets. It is idempotent: every worker calls it at start.
func SetupQueue(ctx context.Context, nc *nats.Conn, cfg QueueConfig) (*Queue, error) {
	cfg = cfg.withDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jobsStreamConfig(cfg)); err != nil {
		return nil, fmt.Errorf("set up stream %s: %w", StreamJobs, err)
	}
	q := &Queue{nc: nc, js: js}
	if q.results, err = js.CreateOrUpdateStream(ctx, resultsStreamConfig(cfg)); err != nil {
		return nil, fmt.Errorf("set up stream %s: %w", StreamResults, err)
	}
	if q.status, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketStatus,
		Description: "imagevet: latest result per image name",
		History:     10,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", BucketStatus, err)
	}
	if q.consoles, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      BucketConsoles,
		Description: "imagevet: full serial console logs by job id",
		TTL:         cfg.ResultsMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", BucketConsoles, err)
	}
	return q, nil
}

// OpenQueue binds to existing streams and buckets, creating them with default settings
// only when they are missing (so a submitter may run before any worker started).
func OpenQueue(ctx context.Context, nc *nats.Conn) (*Queue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	q := &Queue{nc: nc, js: js}
	_, errJobs := js.Stream(ctx, StreamJobs)
	q.results, err = js.Stream(ctx, StreamResults)
	if err == nil && errJobs == nil {
		q.status, err = js.KeyValue(ctx, BucketStatus)
	}
	if err == nil && errJobs == nil {
		q.consoles, err = js.ObjectStore(ctx, BucketConsoles)
	}
	if err == nil && errJobs == nil {
		return q, nil
	}
	for _, e := range []error{errJobs, err} {
		if e != nil && !errors.Is(e, jetstream.ErrStreamNotFound) && !errors.Is(e, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("open imagevet streams: %w", e)
		}
	}
	return SetupQueue(ctx, nc, QueueConfig{})
}

// SetupConsumer creates or updates the durable pull consumer all workers share.
func (q *Queue) SetupConsumer(ctx context.Context, cfg QueueConfig) (jetstream.Consumer, error) {
	cfg = cfg.withDefaults()
	c, err := q.js.CreateOrUpdateConsumer(ctx, StreamJobs, jetstream.ConsumerConfig{
		Durable:       ConsumerWorkers,
		Description:   "imagevet workers",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		FilterSubject: SubjectJobs,
		MaxAckPending: -1,
		Replicas:      cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("set up consumer %s: %w", ConsumerWorkers, err)
	}
	return c, nil
}

// JetStream returns the JetStream context the queue uses.
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

func jobsStreamConfig(cfg QueueConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamJobs,
		Description: "imagevet: submitted jobs until a worker reports them",
		Subjects:    []string{SubjectJobs},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  cfg.DedupeWindow,
		MaxMsgSize:  MaxDocumentSize,
		Replicas:    cfg.Replicas,
	}
}

func resultsStreamConfig(cfg QueueConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamResults,
		Description: "imagevet: final result per job id",
		Subjects:    []string{SubjectResults},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      cfg.ResultsMaxAge,
		Duplicates:  cfg.DedupeWindow,
		Replicas:    cfg.Replicas,
		// Results are final: one per job id. AllowDirect lets readers fetch the last
		// message of a subject cheaply from any replica.
		MaxMsgsPerSubject: 1,
		AllowDirect:       true,
	}
}
