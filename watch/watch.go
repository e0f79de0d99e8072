// Package watch notices new vendor image releases and queues them for vetting. For
// every family of the catalog it reads the vendor feed (package feed), compares the
// newest release with the one recorded in the releases bucket (jobs.BucketReleases,
// shared by every watcher), and submits one job per new release whose id is derived
// from the family, the version and the digest: reruns and concurrent watchers derive
// the same id, record the release with compare-and-set, and the queue drops
// duplicate submissions, so a release is vetted once.
//
// A family whose feed fails is reported (log, metrics, its record's feed_error) and
// retried; the other families go on. Feeds are read with conditional requests, so a
// poll of unchanged feeds costs one 304 per family.
package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/retry"
	"github.com/imagevet/imagevet/watch/catalog"
	"github.com/imagevet/imagevet/watch/feed"

	"github.com/imagevet/imagevet/queue"
)

// Defaults of Config.
const (
	DefaultInterval    = 24 * time.Hour
	DefaultRetry       = 15 * time.Minute
	DefaultAttempts    = 3
	DefaultParallelism = 4
)

// Config tunes a Watcher. Zero fields take the defaults.
type Config struct {
	// Interval is the time between two polls of a family (default daily); each wait
	// is moved by a random amount within ±Jitter (default a tenth of Interval) so
	// that watchers and vendors are not hit in step.
	Interval time.Duration
	Jitter   time.Duration
	// Retry is how soon a family whose feed failed is polled again (default 15 min).
	Retry time.Duration
	// Attempts bounds the reads of a feed within one poll when the server fails
	// (default 3), with a short pause between them. A read that ran out of
	// RequestTimeout is not tried again within the poll: a server that accepts and
	// never answers costs its family one request timeout, not Attempts of them, and
	// Retry polls it again.
	Attempts int
	// RequestTimeout bounds each HTTP request (default feed.DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Parallelism is how many families are polled at once (default 4).
	Parallelism int
	// CheckArtefact sends a HEAD for a new release's artefact before queuing it, so a
	// release whose checksums reached the mirror before its image waits for the
	// next poll.
	CheckArtefact bool
	// HTTP sends the feed requests (nil: the feed package's client).
	HTTP *http.Client
	// Logger receives one line per family and poll (nil: slog.Default()).
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Jitter < 0 || c.Jitter >= c.Interval {
		c.Jitter = c.Interval / 10
	}
	if c.Retry <= 0 {
		c.Retry = DefaultRetry
	}
	if c.Attempts <= 0 {
		c.Attempts = DefaultAttempts
	}
	if c.Parallelism <= 0 {
		c.Parallelism = DefaultParallelism
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// KeyringLoader loads the keyring file a catalog family names.
type KeyringLoader func(path string) (feed.Verifier, error)

// Watcher polls the feeds of a catalog's families. It is safe for concurrent use.
type Watcher struct {
	cfg      Config
	families []family
	q        *queue.Queue
	kv       jetstream.KeyValue
	metrics  *Metrics
}

type family struct {
	catalog.Family
	keyring feed.Verifier
}

// New binds a watcher to the queue and the releases bucket and loads every family's
// keyring. A keyring that does not load is an error naming the family and the
// catalog line: such a family could never queue anything.
func New(ctx context.Context, cfg Config, fams []catalog.Family, q *queue.Queue, load KeyringLoader, m *Metrics) (*Watcher, error) {
	cfg = cfg.withDefaults()
	kv, err := q.ReleasesBucket(ctx)
	if err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics()
	}
	w := &Watcher{cfg: cfg, q: q, kv: kv, metrics: m}
	var errs []error
	for _, f := range fams {
		fam := family{Family: f}
		if f.Feed.Keyring != "" {
			if load == nil {
				errs = append(errs, fmt.Errorf("%s:%d: family %s: no keyring loader", f.File, f.Line, f.Key))
				continue
			}
			if fam.keyring, err = load(f.Feed.Keyring); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: family %s: %w", f.File, f.Line, f.Key, err))
				continue
			}
		}
		w.families = append(w.families, fam)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return w, nil
}

// Outcome states.
const (
	OutcomeUnchanged = "unchanged" // nothing new upstream
	OutcomeQueued    = "queued"    // a new release, its job submitted by this watcher
	OutcomeSeen      = "seen"      // a new release another watcher had already recorded
	OutcomeFailed    = "failed"    // the feed could not be read or trusted; retried later
)

// Outcome is what one poll of one family did.
type Outcome struct {
	Family  string
	State   string
	Release string // the newest release upstream, when known
	JobID   string // the job vetting it, when known
	// Requests is how many HTTP requests the poll sent.
	Requests int64
	// Took is how long the poll took.
	Took time.Duration
	// Warning says what an operator should look at although the poll succeeded: the
	// vendor published the release again with different bytes.
	Warning string
	Err     error
}

// Poll checks every family once, Parallelism at a time, and returns what happened to
// each, in catalog order. Failures are in the outcomes, not an error: one family's
// feed never stops the others.
func (w *Watcher) Poll(ctx context.Context) []Outcome {
	keys := make([]string, len(w.families))
	for i, f := range w.families {
		keys[i] = f.Key
	}
	return w.pollKeys(ctx, keys)
}

// Run polls every family now and then every Interval (±Jitter); a family whose poll
// failed is polled again after Retry. It returns when ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	next := make(map[string]time.Time, len(w.families))
	now := time.Now()
	for _, f := range w.families {
		next[f.Key] = now
	}
	for {
		var due []string
		wake := time.Now().Add(w.cfg.Interval)
		for _, f := range w.families {
			t := next[f.Key]
			if !t.After(time.Now()) {
				due = append(due, f.Key)
			} else if t.Before(wake) {
				wake = t
			}
		}
		if len(due) > 0 {
			for _, o := range w.pollKeys(ctx, due) {
				if o.State == OutcomeFailed {
					next[o.Family] = time.Now().Add(spread(w.cfg.Retry, w.cfg.Retry/10))
				} else {
					next[o.Family] = time.Now().Add(spread(w.cfg.Interval, w.cfg.Jitter))
				}
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(wake)):
		}
	}
}

func (w *Watcher) pollKeys(ctx context.Context, keys []string) []Outcome {
	out := make([]Outcome, len(keys))
	sem := make(chan struct{}, w.cfg.Parallelism)
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = w.PollFamily(ctx, k)
		}()
	}
	wg.Wait()
	return out
}

// spread returns d moved by a random amount within ±jitter.
func spread(d, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return d
	}
	return d + time.Duration(rand.Int64N(int64(2*jitter))) - jitter
}

// PollFamily checks one family's feed and queues its newest release when it is new.
func (w *Watcher) PollFamily(ctx context.Context, key string) Outcome {
	var fam *family
	for i := range w.families {
		if w.families[i].Key == key {
			fam = &w.families[i]
		}
	}
	if fam == nil {
		return Outcome{Family: key, State: OutcomeFailed, Err: fmt.Errorf("no family %q in the catalog", key)}
	}
	start := time.Now()
	o := w.poll(ctx, fam)
	o.Took = time.Since(start)
	w.metrics.observe(o, o.Took)
	log := w.cfg.Logger.With("family", key, "state", o.State, "release", o.Release, "requests", o.Requests,
		"took", o.Took.Round(time.Millisecond))
	switch {
	case o.Err != nil:
		log.Warn("feed check failed", "err", o.Err)
	case o.State == OutcomeQueued:
		log.Info("new release queued", "job", o.JobID)
	default:
		log.Info("feed checked", "job", o.JobID)
	}
	return o
}

// poll reads one family's feed and says what it found: the recorded release
// again, an older or re-published one that changes nothing, or a new release,
// recorded pending and queued.
func (w *Watcher) poll(ctx context.Context, fam *family) (o Outcome) {
	o = Outcome{Family: fam.Key}
	rec, rev, err := w.record(ctx, fam.Key)
	if err != nil {
		o.State, o.Err = OutcomeFailed, err
		return o
	}
	client := &feed.Client{HTTP: w.cfg.HTTP, Timeout: w.cfg.RequestTimeout, Next: map[string]jobs.Validator{}}
	if rec.Release != "" {
		// Validators are only worth sending when the release they led to is known.
		client.Prev = rec.Validators
	}
	defer func() { o.Requests = client.Requests() }()
	rel, err := w.read(ctx, client, fam.source())
	switch {
	case errors.Is(err, feed.ErrNotModified):
		o.State, o.Release, o.JobID = OutcomeUnchanged, rec.Release, rec.JobID
		o.Err = w.finishUnchanged(ctx, fam, rec, client.Next)
		return o
	case err != nil:
		o.State, o.Err = OutcomeFailed, err
		w.recordFailure(ctx, fam, err)
		return o
	}
	o.Release = rel.Version
	jobID := jobs.ReleaseJobID(fam.Key, rel.Version, rel.Digest)
	o.JobID = jobID
	if rec.JobID == jobID {
		o.State = OutcomeUnchanged
		o.Err = w.finishUnchanged(ctx, fam, rec, client.Next)
		return o
	}
	digests, seen := w.republished(&o, fam, rec, rel, jobID)
	if seen {
		o.State, o.JobID = OutcomeUnchanged, rec.JobID
		o.Err = w.finishUnchanged(ctx, fam, rec, nil)
		return o
	}
	if rec.Release != "" && feed.CompareVersions(rel.Version, rec.Release) < 0 {
		// A mirror behind the one seen before (load-balanced vendor mirrors lag):
		// never go back to an older release. No validators are kept, so the next
		// poll reads the feed in full again.
		w.cfg.Logger.Warn("feed shows an older release than recorded", "family", fam.Key,
			"feed_release", rel.Version, "recorded", rec.Release)
		o.State, o.Release, o.JobID = OutcomeUnchanged, rec.Release, rec.JobID
		o.Err = w.finishUnchanged(ctx, fam, rec, nil)
		return o
	}
	if err := w.checkArtefact(ctx, client, rel); err != nil {
		o.State, o.Err = OutcomeFailed, err
		w.recordFailure(ctx, fam, err)
		return o
	}
	next := pendingRecord(fam, rel, jobID, client.Next)
	if digests != nil {
		// The version was first seen before; these bytes now.
		next.FirstSeen = rec.FirstSeen
		next.Digests = append(slices.Clip(digests), jobs.ReleaseDigest{Digest: rel.Digest, URL: rel.URL, FirstSeen: next.CheckedAt, JobID: jobID})
	}
	o.State, o.Err = w.queueRelease(ctx, fam, rel, next, rev)
	return o
}

// source is where the family's releases are read.
func (f *family) source() feed.Source {
	src := feed.Source{Kind: f.Feed.Kind, URL: f.Feed.URL, Arch: f.Feed.Arch, Artefact: f.Feed.Artefact,
		Product: f.Feed.Product}
	if f.keyring != nil {
		src.Keyring = f.keyring
	}
	return src
}

// republished handles the recorded version published again with other bytes:
// new bytes are vetted once and followed, with the digests seen so far under the
// version (returned); bytes seen before under it (a mirror pool alternating
// between two builds) change nothing (seen), or the record would flip at every
// poll. Either way o gets a warning.
func (w *Watcher) republished(o *Outcome, fam *family, rec jobs.ReleaseRecord, rel feed.Release, jobID string) (digests []jobs.ReleaseDigest, seen bool) {
	if rec.Release != rel.Version || rec.Digest == rel.Digest {
		return nil, false
	}
	digests = rec.Digests
	if len(digests) == 0 {
		digests = []jobs.ReleaseDigest{{Digest: rec.Digest, URL: rec.URL, FirstSeen: rec.FirstSeen, JobID: rec.JobID}}
	}
	o.Warning = fmt.Sprintf("release %s published again with different bytes: %s, recorded %s", rel.Version, rel.Digest, rec.Digest)
	log := w.cfg.Logger.With("family", fam.Key, "release", rel.Version, "feed_digest", rel.Digest,
		"recorded_digest", rec.Digest, "signed", fam.keyring != nil)
	if slices.ContainsFunc(digests, func(d jobs.ReleaseDigest) bool { return d.Digest == rel.Digest }) {
		o.Warning += " (seen before; the record stays)"
		log.Warn("feed alternates between builds of one release; keeping the recorded one", "job", rec.JobID)
		return nil, true
	}
	log.Warn("release published again with different bytes; vetting the new bytes", "job", jobID)
	return digests, false
}

// checkArtefact, when the watcher is asked to, makes sure the release's file is
// there, of the size the feed says, before anything is queued.
func (w *Watcher) checkArtefact(ctx context.Context, client *feed.Client, rel feed.Release) error {
	if !w.cfg.CheckArtefact {
		return nil
	}
	n, err := client.Head(ctx, rel.URL)
	if err != nil {
		return fmt.Errorf("artefact not available yet: %w", err)
	}
	if rel.Size > 0 && n >= 0 && n != rel.Size {
		return fmt.Errorf("artefact %s is %d bytes, the feed says %d", rel.URL, n, rel.Size)
	}
	return nil
}

// pendingRecord is the record of a new release whose job is about to be queued.
func pendingRecord(fam *family, rel feed.Release, jobID string, validators map[string]jobs.Validator) jobs.ReleaseRecord {
	now := time.Now().UTC()
	return jobs.ReleaseRecord{
		Version: jobs.Version, Family: fam.Key, Name: fam.Name, Release: rel.Version, URL: rel.URL,
		Digest: rel.Digest, Size: rel.Size, ReleasedAt: rel.ReleasedAt, FirstSeen: now, JobID: jobID,
		State: jobs.ReleasePending, CheckedAt: now, Validators: validators,
	}
}

// queueRelease records the release pending (next, over the record at rev) and
// submits its job, then marks it queued. When another watcher recorded it first,
// that one submits: this one makes sure of it only while its record still says
// pending.
func (w *Watcher) queueRelease(ctx context.Context, fam *family, rel feed.Release, next jobs.ReleaseRecord, rev uint64) (string, error) {
	won, cur, err := w.claim(ctx, fam.Key, next, rev)
	if err != nil {
		return OutcomeFailed, err
	}
	state := OutcomeQueued
	if !won {
		state = OutcomeSeen
		if cur.JobID != next.JobID || cur.State != jobs.ReleasePending {
			return state, nil
		}
	}
	if err := w.submit(ctx, fam, rel, next.JobID); err != nil {
		w.recordFailure(ctx, fam, err)
		return OutcomeFailed, err
	}
	return state, w.update(ctx, fam.Key, func(r *jobs.ReleaseRecord) bool {
		if r.JobID != next.JobID || r.State == jobs.ReleaseQueued {
			return false
		}
		r.State = jobs.ReleaseQueued
		return true
	})
}

// read reads the feed, trying again after a pause when the server failed, but not
// when it stayed silent for a whole request timeout.
func (w *Watcher) read(ctx context.Context, c *feed.Client, src feed.Source) (feed.Release, error) {
	var rel feed.Release
	err := retry.Policy{Initial: time.Second, Max: 5 * time.Second, Jitter: 0.2, Attempts: w.cfg.Attempts}.Do(ctx,
		func(int) error {
			var err error
			rel, err = feed.Read(ctx, c, src)
			return err
		},
		// A server that failed may answer next time; one that ran out of the
		// request timeout costs that timeout again, so it waits for the next poll.
		func(_ int, err error) bool {
			return errors.Is(err, feed.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded)
		})
	if err != nil {
		return feed.Release{}, err
	}
	return rel, nil
}

// finishUnchanged notes a successful check of a feed that has nothing new, and
// submits the recorded release's job again when its submission was not confirmed.
func (w *Watcher) finishUnchanged(ctx context.Context, fam *family, rec jobs.ReleaseRecord, validators map[string]jobs.Validator) error {
	if rec.State == jobs.ReleasePending && rec.JobID != "" {
		rel := feed.Release{Version: rec.Release, URL: rec.URL, Digest: rec.Digest, Size: rec.Size, ReleasedAt: rec.ReleasedAt}
		if err := w.submit(ctx, fam, rel, rec.JobID); err != nil {
			return err
		}
	}
	return w.update(ctx, fam.Key, func(r *jobs.ReleaseRecord) bool {
		if r.JobID != rec.JobID {
			return false // another watcher recorded a newer release meanwhile
		}
		if r.State == jobs.ReleasePending {
			r.State = jobs.ReleaseQueued
		}
		r.CheckedAt, r.FeedError, r.FeedErrorAt = time.Now().UTC(), "", nil
		r.Validators = validators
		return true
	})
}

// NewJob is the job vetting rel, a release of fam: the family's template with the
// release's source, digest, version and date, under its deterministic id.
func NewJob(fam catalog.Family, rel feed.Release) jobs.Job {
	j := fam.Job
	j.Version = jobs.Version
	j.ID = jobs.ReleaseJobID(fam.Key, rel.Version, rel.Digest)
	j.Image.Source, j.Image.Checksum = rel.URL, rel.Digest
	j.Publish.Name, j.Publish.Family = fam.Name, fam.Key
	j.Publish.Release, j.Publish.ReleasedAt = rel.Version, rel.ReleasedAt
	return j
}

func (w *Watcher) submit(ctx context.Context, fam *family, rel feed.Release, jobID string) error {
	if _, ok, err := w.q.Result(ctx, jobID); err != nil {
		return err
	} else if ok {
		return nil // vetted already (the queue's dedupe window may have passed)
	}
	job := NewJob(fam.Family, rel)
	if _, err := w.q.Submit(ctx, job); err != nil {
		return fmt.Errorf("submit %s: %w", jobID, err)
	}
	return nil
}

// record reads a family's record and its revision (0 when there is none).
func (w *Watcher) record(ctx context.Context, key string) (jobs.ReleaseRecord, uint64, error) {
	e, err := w.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return jobs.ReleaseRecord{}, 0, nil
	}
	if err != nil {
		return jobs.ReleaseRecord{}, 0, fmt.Errorf("read release record %s: %w", key, err)
	}
	r, err := jobs.DecodeReleaseRecord(e.Value())
	if err != nil {
		return jobs.ReleaseRecord{}, 0, fmt.Errorf("%s: %w", key, err)
	}
	return r, e.Revision(), nil
}

// claim writes next as the family's record if the record is still at revision rev.
// When another watcher changed it first, it returns won=false and the record as it
// is now.
func (w *Watcher) claim(ctx context.Context, key string, next jobs.ReleaseRecord, rev uint64) (won bool, cur jobs.ReleaseRecord, err error) {
	data, err := json.Marshal(next)
	if err != nil {
		return false, cur, err
	}
	switch won, err := queue.CompareAndSet(ctx, w.kv, key, data, rev); {
	case err != nil:
		return false, cur, fmt.Errorf("write release record %s: %w", key, err)
	case won:
		return true, next, nil
	}
	cur, _, err = w.record(ctx, key)
	return false, cur, err
}

// update applies change to the family's record with compare-and-set, reading again
// after losing a race; change returns false to leave the record alone.
func (w *Watcher) update(ctx context.Context, key string, change func(*jobs.ReleaseRecord) bool) error {
	for range 5 {
		rec, rev, err := w.record(ctx, key)
		if err != nil {
			return err
		}
		if rec.Family == "" {
			rec.Version, rec.Family = jobs.Version, key
		}
		if !change(&rec) {
			return nil
		}
		won, _, err := w.claim(ctx, key, rec, rev)
		if err != nil || won {
			return err
		}
	}
	return fmt.Errorf("write release record %s: too much contention", key)
}

// recordFailure notes a failed check in the family's record (bounded, on a context
// that outlives the poll's cancellation).
func (w *Watcher) recordFailure(ctx context.Context, fam *family, cause error) {
	if ctx.Err() != nil {
		return // the poll was cancelled (shutdown): not the feed's failure
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	now := time.Now().UTC()
	if err := w.update(ctx, fam.Key, func(r *jobs.ReleaseRecord) bool {
		r.Name = fam.Name
		r.FeedError, r.FeedErrorAt = cause.Error(), &now
		return true
	}); err != nil {
		w.cfg.Logger.Warn("recording a feed failure", "family", fam.Key, "err", err)
	}
}
