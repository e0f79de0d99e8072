package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imagevet/imagevet/jobs"

	"github.com/imagevet/imagevet/queue"
)

// Fleet is every cloud (or region) a publisher serves, each with its own Glance. A
// cloud logs in when first used and again after a failed login, so one that is down
// at start or later holds back no other: its publications wait as retrying records.
type Fleet struct {
	targets []*target
	log     *slog.Logger
	now     func() time.Time
}

// target is one cloud of the fleet.
type target struct {
	name  string
	creds Credentials
	cfg   Config // the publisher's configuration but its Cloud
	mu    sync.Mutex
	pub   *Publisher
	// failed and failedAt remember the last failed login, so that a cloud that is
	// unreachable (a login that times out) costs one wait per loginPause, not one
	// per result.
	failed   error
	failedAt time.Time
}

// loginPause is how long a failed login is answered from memory.
const loginPause = 30 * time.Second

// NewFleet returns the fleet of the clouds creds name; cfg (without Cloud) configures
// each cloud's Publisher, and tune, if not nil, adjusts one cloud's copy. Names must
// be unique.
func NewFleet(cfg Config, creds []Credentials, tune func(name string, c *Config)) (*Fleet, error) {
	f := &Fleet{log: cfg.Logger, now: cfg.Now}
	for _, cr := range creds {
		cr.Name = CloudName(cr)
		if f.target(cr.Name) != nil {
			return nil, &ConfigError{Field: "os-cloud", Err: fmt.Errorf("two clouds are named %q: name them (NAME=ENTRY)", cr.Name)}
		}
		c := cfg
		if tune != nil {
			tune(cr.Name, &c)
		}
		f.targets = append(f.targets, &target{name: cr.Name, creds: cr, cfg: c})
	}
	if len(f.targets) == 0 {
		return nil, &ConfigError{Field: "os-cloud", Err: errors.New("no cloud configured")}
	}
	f.defaults()
	return f, nil
}

// FleetOf makes a fleet of publishers already logged in.
func FleetOf(pubs ...*Publisher) *Fleet {
	f := &Fleet{}
	for _, p := range pubs {
		f.targets = append(f.targets, &target{name: p.cfg.Cloud.Name, cfg: p.cfg, pub: p})
		if f.log == nil {
			f.log, f.now = p.cfg.Logger, p.cfg.Now
		}
	}
	f.defaults()
	return f
}

func (f *Fleet) defaults() {
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.now == nil {
		f.now = time.Now
	}
}

// Names lists the fleet's cloud names, in configuration order.
func (f *Fleet) Names() []string {
	out := make([]string, len(f.targets))
	for i, t := range f.targets {
		out[i] = t.name
	}
	return out
}

func (f *Fleet) target(name string) *target {
	for _, t := range f.targets {
		if t.name == name {
			return t
		}
	}
	return nil
}

// Publisher returns the named cloud's publisher, logging in first if it has not.
func (f *Fleet) Publisher(ctx context.Context, name string) (*Publisher, error) {
	t := f.target(name)
	if t == nil {
		return nil, &ConfigError{Field: "publish.clouds", Err: fmt.Errorf("cloud %q is not one of this publisher's clouds (%s)", name, strings.Join(f.Names(), ", "))}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pub != nil {
		return t.pub, nil
	}
	if t.failed != nil && f.now().Sub(t.failedAt) < loginPause {
		return nil, t.failed
	}
	c, err := Login(ctx, t.creds)
	if err != nil {
		if ctx.Err() == nil {
			t.failed, t.failedAt = err, f.now()
		}
		return nil, err
	}
	cfg := t.cfg
	cfg.Cloud = c
	p, err := New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	t.pub = p
	return p, nil
}

// LoginAll logs in to every cloud not logged in yet, at once, and returns each
// failure by cloud name: a *ConfigError will not go away by itself, anything else (a
// cloud that is down) is tried again when the cloud is next used.
func (f *Fleet) LoginAll(ctx context.Context) map[string]error {
	errs := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, t := range f.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.Publisher(ctx, t.name); err != nil {
				mu.Lock()
				errs[t.name] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

// Selected lists the clouds a result goes to: those its publish.clouds names (each,
// configured or not: an unknown one is refused when published), or every cloud.
func (f *Fleet) Selected(r jobs.Result) []string {
	if len(r.Publish.Clouds) == 0 {
		return f.Names()
	}
	out := slices.Clone(r.Publish.Clouds)
	slices.Sort(out)
	return slices.Compact(out)
}

// CloudOutcome is one cloud's part of a publication.
type CloudOutcome struct {
	Outcome
	// Err is why the publication failed in this cloud; Retryable says whether it
	// may succeed later by itself.
	Err       error `json:"-"`
	Retryable bool  `json:"-"`
	// Record is what was written to queue.BucketPublications (not in a dry run).
	Record *jobs.PublicationRecord `json:"-"`
}

// PublishTo publishes r to the named clouds at once (none waits for another) and,
// unless dryRun or without a queue, records each cloud's state in
// queue.BucketPublications: done, retrying (due again after retryDelay, doubled per
// attempt up to an hour) or refused with its reason. With skipDone, a cloud whose
// record says done is left alone.
func (f *Fleet) PublishTo(ctx context.Context, q *queue.Queue, r jobs.Result, clouds []string, dryRun, skipDone bool, retryDelay time.Duration) []CloudOutcome {
	outs := make([]CloudOutcome, len(clouds))
	var wg sync.WaitGroup
	for i, name := range clouds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = f.publishOne(ctx, q, r, name, dryRun, skipDone, retryDelay)
		}()
	}
	wg.Wait()
	return outs
}

func (f *Fleet) publishOne(ctx context.Context, q *queue.Queue, r jobs.Result, name string, dryRun, skipDone bool, retryDelay time.Duration) CloudOutcome {
	out := CloudOutcome{Outcome: Outcome{JobID: r.JobID, Family: r.Publish.Family, Cloud: name, Plan: []Action{}}}
	var prev jobs.PublicationRecord
	if q != nil && !dryRun {
		rec, ok, err := q.Publication(ctx, r.JobID, name)
		if err != nil {
			out.Err, out.Retryable = err, true
			return out
		}
		if ok && skipDone && rec.State == jobs.PublicationDone {
			out.Status, out.ImageID, out.Region, out.Record = StatusAlready, rec.ImageID, rec.Region, &rec
			return out
		}
		prev = rec
	}
	p, err := f.Publisher(ctx, name)
	if err == nil {
		out.Outcome, err = p.Publish(ctx, r, dryRun)
	} else if t := f.target(name); t != nil {
		out.Region = t.creds.Region
	}
	out.Err, out.Retryable = err, err != nil && Retryable(err)
	if q == nil || dryRun || out.Status == StatusSkipped || (err != nil && ctx.Err() != nil) {
		return out // nothing to record (or shutting down: the next run decides)
	}
	rec := jobs.PublicationRecord{JobID: r.JobID, Family: r.Publish.Family, Cloud: name, Region: out.Region,
		ImageID: out.ImageID, Attempts: prev.Attempts + 1, UpdatedAt: f.now().UTC(), Outcome: out.Status}
	if fa := r.ImageFacts; fa != nil {
		rec.SourceHash, rec.OSHashValue = fa.SourceHash(), fa.OSHashValue
	}
	switch {
	case err == nil:
		rec.State = jobs.PublicationDone
	case out.Retryable:
		rec.State, rec.Reason = jobs.PublicationRetrying, err.Error()
		next := f.now().Add(backoff(retryDelay, rec.Attempts)).UTC()
		rec.NextTry = &next
	default:
		rec.State, rec.Reason = jobs.PublicationRefused, err.Error()
	}
	if werr := q.PutPublication(context.WithoutCancel(ctx), rec); werr != nil {
		out.Err, out.Retryable = errors.Join(err, werr), true
		return out
	}
	out.Record = &rec
	return out
}

// backoff is the wait before attempt n+1: base, doubled per attempt, at most an hour.
func backoff(base time.Duration, attempts int) time.Duration {
	d := base
	for i := 1; i < attempts && d < time.Hour; i++ {
		d *= 2
	}
	return min(d, time.Hour)
}
