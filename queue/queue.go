package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
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
	// BucketConsoles is the object store bucket holding full console logs, one object
	// per reported attempt (see ConsoleRef).
	BucketConsoles = "imagevet_consoles"
	// BucketQueue holds the queue's settings under SettingsKey (see Settings).
	BucketQueue = "imagevet_queue"
	// SettingsKey is the key of the Settings document in BucketQueue.
	SettingsKey = "settings"
	// BucketJobs holds one JobState per submission being worked on (key
	// JobStateKey): attempts made, stage, worker. Entries go when the job is settled.
	BucketJobs = "imagevet_jobs"
	// BucketWorkers holds one WorkerInfo per live worker (key: worker id), refreshed
	// every WorkerHeartbeat; an entry not refreshed for WorkerTTL expires.
	BucketWorkers = "imagevet_workers"
	// SubjectCancelPrefix + job id is where `imagevet cancel` tells workers (core NATS)
	// to stop a running job.
	SubjectCancelPrefix = "imagevet.cancel."
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

// ProgressSubject is the subject a job's progress events go to: core NATS for
// followers, stored by StreamProgress for pages opened mid-job.
func ProgressSubject(jobID string) string { return "imagevet.progress." + jobID }

// ConsoleRef is what Result.ConsoleLog holds once the full log is in BucketConsoles
// under the object name (see ConsoleObject).
func ConsoleRef(object string) string { return "nats-object://" + BucketConsoles + "/" + object }

// ConsoleObject is the object name of one attempt's console log: every attempt stores
// its own, and only the winning result points at one, so a losing duplicate never
// overwrites what a publisher reads.
func ConsoleObject(jobID string, attempt int, worker string) string {
	return fmt.Sprintf("%s/%d/%s", jobID, attempt, worker)
}

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

// Config tunes the streams, buckets and the shared consumer. Zero fields take the
// defaults. It applies only when the queue is set up (`imagevet queue setup`, or the
// first worker on an empty server); afterwards every process reads the settings the
// queue holds (Settings) instead of its own.
type Config struct {
	// AckWait is how long a delivered job may go without an ack or heartbeat before
	// the server gives it to another worker.
	AckWait time.Duration
	// MaxDeliver bounds the attempts of one job. Workers enforce it (the server
	// redelivers without limit), so a worker dying on the last attempt still ends
	// in a final result.
	MaxDeliver int
	// DedupeWindow is how long a resubmitted job id is dropped by the server (>= 1 h).
	DedupeWindow time.Duration
	// ResultsMaxAge is how long results and console logs are kept.
	ResultsMaxAge time.Duration
	// Replicas is the replica count of every stream, bucket and the consumer on a
	// clustered server: 3 on a three-node cluster survives one node (default 1).
	Replicas int
}

func (c Config) withDefaults() Config {
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

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.AckWait != 0 && c.AckWait < 3*time.Second {
		errs = append(errs, fmt.Errorf("ack wait %s: at least 3s", c.AckWait))
	}
	if c.MaxDeliver < 0 {
		errs = append(errs, fmt.Errorf("max deliver %d: at least 1", c.MaxDeliver))
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: 1-5", c.Replicas))
	}
	if c.DedupeWindow != 0 && c.DedupeWindow < time.Hour {
		errs = append(errs, fmt.Errorf("dedupe window %s: at least 1h", c.DedupeWindow))
	}
	return errors.Join(errs...)
}

// Settings is the one source of truth for how the queue behaves, kept under
// SettingsKey in BucketQueue by whoever set the queue up. Workers read it at start and
// follow it (heartbeat interval from AckWait, attempt limit from MaxDeliver), saying
// so when their own flags differ.
type Settings struct {
	AckWait       jobs.Duration `json:"ack_wait"`
	MaxDeliver    int           `json:"max_deliver"`
	DedupeWindow  jobs.Duration `json:"dedupe_window"`
	ResultsMaxAge jobs.Duration `json:"results_max_age"`
	Replicas      int           `json:"replicas"`
	SetBy         string        `json:"set_by"`
	SetAt         time.Time     `json:"set_at"`
}

// Config returns the settings as a Config.
func (s Settings) Config() Config {
	return Config{AckWait: s.AckWait.D(), MaxDeliver: s.MaxDeliver, DedupeWindow: s.DedupeWindow.D(),
		ResultsMaxAge: s.ResultsMaxAge.D(), Replicas: s.Replicas}
}

// Differences lists, as "name queue=X flag=Y", the non-zero fields of want that differ
// from the queue's settings.
func (s Settings) Differences(want Config) []string {
	var out []string
	have := s.Config()
	if want.AckWait != 0 && want.AckWait != have.AckWait {
		out = append(out, fmt.Sprintf("ack_wait queue=%s flag=%s", have.AckWait, want.AckWait))
	}
	if want.MaxDeliver != 0 && want.MaxDeliver != have.MaxDeliver {
		out = append(out, fmt.Sprintf("max_deliver queue=%d flag=%d", have.MaxDeliver, want.MaxDeliver))
	}
	if want.DedupeWindow != 0 && want.DedupeWindow != have.DedupeWindow {
		out = append(out, fmt.Sprintf("dedupe_window queue=%s flag=%s", have.DedupeWindow, want.DedupeWindow))
	}
	if want.ResultsMaxAge != 0 && want.ResultsMaxAge != have.ResultsMaxAge {
		out = append(out, fmt.Sprintf("results_max_age queue=%s flag=%s", have.ResultsMaxAge, want.ResultsMaxAge))
	}
	if want.Replicas != 0 && want.Replicas != have.Replicas {
		out = append(out, fmt.Sprintf("replicas queue=%d flag=%d", have.Replicas, want.Replicas))
	}
	return out
}

// ErrNotSetUp is returned by Open when the server holds no imagevet queue:
// clients that only submit or read never create one with defaults.
var ErrNotSetUp = errors.New("the imagevet queue is not set up on this server (run `imagevet queue setup` or start a worker)")

// Queue is a handle on imagevet's streams and buckets. It is safe for concurrent use.
type Queue struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	jobs     jetstream.Stream
	results  jetstream.Stream
	status   jetstream.KeyValue
	consoles jetstream.ObjectStore
	states   jetstream.KeyValue
	workers  jetstream.KeyValue
	// progress and live are nil on a queue set up by an imagevet without them.
	progress jetstream.Stream
	live     jetstream.KeyValue
	settings Settings
	// lists keeps each record bucket's last listing (see records).
	lists listCache
}

// Setup creates or updates every stream, bucket and the shared consumer with
// cfg and records cfg as the queue's settings: the operator's `imagevet queue setup`.
// by names who set it up.
func Setup(ctx context.Context, nc *nats.Conn, cfg Config, by string) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	settings, err := js.CreateOrUpdateKeyValue(ctx, queueBucketConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", BucketQueue, err)
	}
	return setup(ctx, js, nc, settings, cfg, by)
}

// Ensure opens the queue, setting it up with cfg only when the server holds
// none yet (the first worker on an empty server). Settings found on the server win
// over cfg; created reports whether cfg was used.
func Ensure(ctx context.Context, nc *nats.Conn, cfg Config, by string) (q *Queue, created bool, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, false, err
	}
	cfg = cfg.withDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, false, fmt.Errorf("jetstream: %w", err)
	}
	kv, err := js.CreateKeyValue(ctx, queueBucketConfig(cfg))
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, BucketQueue)
	}
	if err != nil {
		return nil, false, fmt.Errorf("open bucket %s: %w", BucketQueue, err)
	}
	// Claim the settings key: exactly one process sets the queue up; the others
	// adopt what it wrote.
	if _, err := kv.Create(ctx, SettingsKey, []byte("{}")); err == nil {
		q, err := setup(ctx, js, nc, kv, cfg, by)
		if err != nil {
			// Give the claim back so the next start tries again.
			_ = kv.Delete(ctx, SettingsKey)
		}
		return q, true, err
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, false, fmt.Errorf("claim queue settings: %w", err)
	}
	// Another process set it up, or is doing so right now.
	for {
		q, err := open(ctx, js, nc, kv)
		if err == nil || !errors.Is(err, ErrNotSetUp) {
			return q, false, err
		}
		select {
		case <-ctx.Done():
			return nil, false, fmt.Errorf("waiting for the queue to be set up: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Open binds to the queue as set up on the server; it never creates anything
// and returns ErrNotSetUp when the queue is missing.
func Open(ctx context.Context, nc *nats.Conn) (*Queue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	kv, err := js.KeyValue(ctx, BucketQueue)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, ErrNotSetUp
	}
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketQueue, err)
	}
	return open(ctx, js, nc, kv)
}

func open(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, kv jetstream.KeyValue) (*Queue, error) {
	entry, err := kv.Get(ctx, SettingsKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotSetUp
	}
	if err != nil {
		return nil, fmt.Errorf("read queue settings: %w", err)
	}
	q := &Queue{nc: nc, js: js}
	if err := json.Unmarshal(entry.Value(), &q.settings); err != nil {
		return nil, fmt.Errorf("queue settings: %w", err)
	}
	if q.settings.SetAt.IsZero() {
		return nil, ErrNotSetUp // claimed, being set up
	}
	missing := func(err error) bool {
		return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)
	}
	bind := []struct {
		name string
		fn   func() error
	}{
		{StreamJobs, func() (err error) { q.jobs, err = js.Stream(ctx, StreamJobs); return }},
		{StreamResults, func() (err error) { q.results, err = js.Stream(ctx, StreamResults); return }},
		{BucketStatus, func() (err error) { q.status, err = js.KeyValue(ctx, BucketStatus); return }},
		{BucketConsoles, func() (err error) { q.consoles, err = js.ObjectStore(ctx, BucketConsoles); return }},
		{BucketJobs, func() (err error) { q.states, err = js.KeyValue(ctx, BucketJobs); return }},
		{BucketWorkers, func() (err error) { q.workers, err = js.KeyValue(ctx, BucketWorkers); return }},
	}
	for _, b := range bind {
		if err := b.fn(); missing(err) {
			return nil, fmt.Errorf("%w: %s is missing", ErrNotSetUp, b.name)
		} else if err != nil {
			return nil, fmt.Errorf("open %s: %w", b.name, err)
		}
	}
	// What only pages read mid-job: a queue set up before they existed works
	// without them (`imagevet queue setup` adds them).
	optional := []struct {
		name string
		fn   func() error
	}{
		{StreamProgress, func() (err error) { q.progress, err = js.Stream(ctx, StreamProgress); return }},
		{BucketLiveConsoles, func() (err error) { q.live, err = js.KeyValue(ctx, BucketLiveConsoles); return }},
	}
	for _, b := range optional {
		if err := b.fn(); err != nil && !missing(err) {
			return nil, fmt.Errorf("open %s: %w", b.name, err)
		}
	}
	return q, nil
}

// setup creates or updates every stream, bucket and the consumer, then writes the
// settings document. Only one process runs it at a time: the operator's queue setup,
// or the first worker, which claimed the settings key (and so also brings the
// streams of an older imagevet up to date).
func setup(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, kv jetstream.KeyValue, cfg Config, by string) (*Queue, error) {
	q := &Queue{nc: nc, js: js}
	stream, bucket, objects := js.CreateOrUpdateStream, js.CreateOrUpdateKeyValue, js.CreateOrUpdateObjectStore
	var err error
	if q.jobs, err = stream(ctx, jobsStreamConfig(cfg)); err != nil {
		return nil, fmt.Errorf("set up stream %s: %w", StreamJobs, err)
	}
	if q.results, err = stream(ctx, resultsStreamConfig(cfg)); err != nil {
		return nil, fmt.Errorf("set up stream %s: %w", StreamResults, err)
	}
	if q.status, err = bucket(ctx, statusBucketConfig(cfg)); err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", BucketStatus, err)
	}
	if q.consoles, err = objects(ctx, consolesStoreConfig(cfg)); err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", BucketConsoles, err)
	}
	if q.states, err = bucket(ctx, jobStatesBucketConfig(cfg)); err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", BucketJobs, err)
	}
	if q.workers, err = bucket(ctx, workersBucketConfig(cfg)); err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", BucketWorkers, err)
	}
	if q.progress, err = stream(ctx, progressStreamConfig(cfg)); err != nil {
		return nil, fmt.Errorf("set up stream %s: %w", StreamProgress, err)
	}
	if q.live, err = bucket(ctx, liveConsolesBucketConfig(cfg)); err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", BucketLiveConsoles, err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, StreamJobs, consumerConfig(cfg)); err != nil {
		return nil, fmt.Errorf("set up consumer %s: %w", ConsumerWorkers, err)
	}
	q.settings = Settings{AckWait: jobs.Duration(cfg.AckWait), MaxDeliver: cfg.MaxDeliver,
		DedupeWindow: jobs.Duration(cfg.DedupeWindow), ResultsMaxAge: jobs.Duration(cfg.ResultsMaxAge),
		Replicas: cfg.Replicas, SetBy: by, SetAt: time.Now().UTC()}
	data, err := json.Marshal(q.settings)
	if err != nil {
		return nil, fmt.Errorf("encode queue settings: %w", err)
	}
	if _, err := kv.Put(ctx, SettingsKey, data); err != nil {
		return nil, fmt.Errorf("write queue settings: %w", err)
	}
	return q, nil
}

// bucketConfig is a KV bucket as the queue keeps each: on file, in replicas copies,
// history values per key; a zero ttl keeps entries until they are replaced.
func bucketConfig(replicas int, name, description string, history uint8, ttl time.Duration) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      name,
		Description: description,
		History:     history,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// streamConfig is a stream as the queue keeps each: one subject filter, on file, in
// replicas copies, messages kept up to limits; each stream adds its own limits.
func streamConfig(replicas int, name, description, subject string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Description: description,
		Subjects:    []string{subject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

func queueBucketConfig(cfg Config) jetstream.KeyValueConfig {
	return bucketConfig(cfg.Replicas, BucketQueue, "imagevet: the queue's settings, written by whoever set it up", 5, 0)
}

func statusBucketConfig(cfg Config) jetstream.KeyValueConfig {
	return bucketConfig(cfg.Replicas, BucketStatus, "imagevet: latest result per image name", 10, 0)
}

func jobStatesBucketConfig(cfg Config) jetstream.KeyValueConfig {
	return bucketConfig(cfg.Replicas, BucketJobs, "imagevet: attempts, stage and worker of every queued or running job",
		1, cfg.DedupeWindow+24*time.Hour)
}

func workersBucketConfig(cfg Config) jetstream.KeyValueConfig {
	return bucketConfig(cfg.Replicas, BucketWorkers, "imagevet: live workers, one heartbeat entry each", 1, WorkerTTL)
}

func consolesStoreConfig(cfg Config) jetstream.ObjectStoreConfig {
	return jetstream.ObjectStoreConfig{
		Bucket:      BucketConsoles,
		Description: "imagevet: full serial console logs by job id",
		TTL:         cfg.ResultsMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}
}

// Replicas is the replica count the queue was set up with (at least 1): services
// that add their own buckets or consumers beside the queue use it too.
func (q *Queue) Replicas() int { return max(1, q.settings.Replicas) }

// Settings returns the queue's settings as found (or written) when it was opened.
func (q *Queue) Settings() Settings { return q.settings }

// Consumer binds to the durable pull consumer all workers share.
func (q *Queue) Consumer(ctx context.Context) (jetstream.Consumer, error) {
	c, err := q.js.Consumer(ctx, StreamJobs, ConsumerWorkers)
	if err != nil {
		return nil, fmt.Errorf("open consumer %s: %w", ConsumerWorkers, err)
	}
	return c, nil
}

// consumerConfig: the server redelivers without limit (MaxDeliver -1); workers count
// attempts in BucketJobs and end the job with a final result at the limit, so no
// delivery can run out silently.
func consumerConfig(cfg Config) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerWorkers,
		Description:   "imagevet workers",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		FilterSubject: SubjectJobs,
		MaxAckPending: -1,
		Replicas:      cfg.Replicas,
	}
}

// Stream binds to one of the queue's streams (StreamJobs, StreamResults), to read
// its state or messages.
func (q *Queue) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	return q.js.Stream(ctx, name)
}

// ResultsConsumer creates (or updates) a durable consumer of every result, one at a
// time with explicit acks: what a service that acts on verdicts (the publisher)
// pulls from. ackWait is its redelivery timeout.
func (q *Queue) ResultsConsumer(ctx context.Context, durable, description string, ackWait time.Duration) (jetstream.Consumer, error) {
	c, err := q.js.CreateOrUpdateConsumer(ctx, StreamResults, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   description,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: 1,
		FilterSubject: SubjectResults,
		Replicas:      q.Replicas(),
	})
	if err != nil {
		return nil, fmt.Errorf("set up consumer %s: %w", durable, err)
	}
	return c, nil
}

// ResultsConsumerInfo reads the state of a durable consumer of the results stream.
func (q *Queue) ResultsConsumerInfo(ctx context.Context, durable string) (*jetstream.ConsumerInfo, error) {
	c, err := q.js.Consumer(ctx, StreamResults, durable)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

func jobsStreamConfig(cfg Config) jetstream.StreamConfig {
	s := streamConfig(cfg.Replicas, StreamJobs, "imagevet: submitted jobs until a worker reports them", SubjectJobs)
	s.Retention = jetstream.WorkQueuePolicy
	s.Duplicates = cfg.DedupeWindow
	s.MaxMsgSize = jobs.MaxDocumentSize
	return s
}

func resultsStreamConfig(cfg Config) jetstream.StreamConfig {
	s := streamConfig(cfg.Replicas, StreamResults, "imagevet: final result per job id", SubjectResults)
	s.MaxAge = cfg.ResultsMaxAge
	s.Duplicates = cfg.DedupeWindow
	// Results are final: one per job id. AllowDirect lets readers fetch the last
	// message of a subject cheaply from any replica.
	s.MaxMsgsPerSubject = 1
	s.AllowDirect = true
	return s
}
