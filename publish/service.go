package publish

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"

	"github.com/imagevet/imagevet/queue"
)

// ConsumerPublishers is the durable consumer of the results stream that every
// publisher shares. It hands out one result at a time (MaxAckPending 1), so two
// publishers never rotate a family at once.
const ConsumerPublishers = "imagevet-publishers"

// Service defaults.
const (
	DefaultAckWait     = 5 * time.Minute
	DefaultRetryDelay  = time.Minute
	DefaultRotateEvery = time.Hour
)

// ServiceConfig tunes Serve. Zero fields take the defaults.
type ServiceConfig struct {
	// AckWait is how long a result may go without a heartbeat before another
	// publisher gets it.
	AckWait time.Duration
	// RetryDelay is how long a publication that failed in one cloud for a passing
	// reason (the cloud, the network) waits before it is tried again; doubled per
	// attempt, up to an hour.
	RetryDelay time.Duration
	// RotateEvery is how often the service brings every published family to its
	// policy again without a new release: an old image whose last user went away
	// is deleted then, and a step that failed (a delete refused) is retried,
	// instead of waiting for the family's next release.
	RotateEvery time.Duration
	Logger      *slog.Logger
}

// Serve publishes results as they arrive to the clouds each selects, until ctx ends:
// at least once per result and cloud, idempotent by job id (Publish finds a job's
// image already in Glance). Results that do not ask for publication are
// acknowledged at once. Every other result is acknowledged once each selected cloud
// has a record in queue.BucketPublications: done, refused (wrong bytes, a bad result
// or configuration: kept with its reason until an operator publishes the job again)
// or retrying: a cloud that failed for a passing reason (down, unreachable) is tried
// again from its record after RetryDelay, doubled per attempt, without holding back
// the other clouds or the next results.
func Serve(ctx context.Context, q *queue.Queue, fleet *Fleet, cfg ServiceConfig) error {
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = DefaultRetryDelay
	}
	if cfg.RotateEvery <= 0 {
		cfg.RotateEvery = DefaultRotateEvery
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cons, err := q.ResultsConsumer(ctx, ConsumerPublishers, "imagevet publishers", cfg.AckWait)
	if err != nil {
		return err
	}
	log.Info("publisher serving", "consumer", ConsumerPublishers, "clouds", strings.Join(fleet.Names(), ","))
	nextRotation := time.Now().Add(cfg.RotateEvery)
	retryEvery := min(cfg.RetryDelay, 30*time.Second)
	nextRetry := time.Now()
	fetchFailing := false
	for ctx.Err() == nil {
		if time.Now().After(nextRetry) {
			retryDue(ctx, q, fleet, cfg, log)
			nextRetry = time.Now().Add(retryEvery)
		}
		if time.Now().After(nextRotation) {
			rotateAll(ctx, q, fleet, log)
			nextRotation = time.Now().Add(cfg.RotateEvery)
		}
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if idle(err) {
			fetchFailing = false
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// Said once per outage, not every few seconds while it lasts.
			if !fetchFailing {
				log.Warn("fetching a result", "err", err)
			} else {
				log.Debug("fetching a result", "err", err)
			}
			fetchFailing = true
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		fetchFailing = false
		handle(ctx, q, fleet, msg, cfg, log)
	}
	return nil
}

// idle reports whether a fetch simply found no result in its wait.
func idle(err error) bool {
	return errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, nats.ErrTimeout)
}

// handle publishes one delivered result to its clouds and settles the message: ack
// once every cloud's state is recorded, nak (with a delay) when a record could not
// be written or the service is stopping.
func handle(ctx context.Context, q *queue.Queue, fleet *Fleet, msg jetstream.Msg, cfg ServiceConfig, log *slog.Logger) {
	r, err := jobs.DecodeResult(msg.Data())
	if err != nil {
		log.Error("undecodable result dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	log = log.With("job", r.JobID, "family", r.Publish.Family)
	if why := Ineligible(r); why != "" {
		log.Debug("result not published", "reason", why)
		_ = msg.Ack()
		return
	}
	hctx, stop := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	outs := fleet.PublishTo(hctx, q, r, fleet.Selected(r), false, true, cfg.RetryDelay)
	stop()
	unrecorded := false
	for _, o := range outs {
		logOutcome(log, o)
		unrecorded = unrecorded || (o.Err != nil && o.Record == nil)
	}
	switch {
	case ctx.Err() != nil:
		// Shutting down: another publisher (or the next start) takes it again.
		_ = msg.Nak()
	case unrecorded:
		_ = msg.NakWithDelay(cfg.RetryDelay)
	default:
		_ = msg.Ack()
	}
}

// logOutcome logs one cloud's part of a publication.
func logOutcome(log *slog.Logger, o CloudOutcome) {
	log = log.With("cloud", o.Cloud, "region", o.Region)
	switch {
	case o.Err == nil:
		log.Info("publication done", "status", o.Status, "image", o.ImageID, "latest", o.Latest,
			"problems", len(o.Problems), "kept", len(o.Kept), "reason", o.Reason)
		for _, pr := range o.Problems {
			log.Warn("publication problem, retried on the next run", "problem", pr)
		}
	case o.Retryable:
		log.Warn("publication failed, will retry", "err", o.Err, "recorded", o.Record != nil)
	default:
		log.Error("publication refused; recorded, retried by imagevet publish --job", "err", o.Err, "recorded", o.Record != nil)
	}
}

// retryDue publishes again every retrying publication whose time has come.
func retryDue(ctx context.Context, q *queue.Queue, fleet *Fleet, cfg ServiceConfig, log *slog.Logger) {
	recs, err := q.Publications(ctx)
	if err != nil {
		log.Warn("reading the publication records", "err", err)
		return
	}
	now := time.Now()
	for _, rec := range recs {
		if ctx.Err() != nil || rec.State != jobs.PublicationRetrying || (rec.NextTry != nil && rec.NextTry.After(now)) {
			continue
		}
		r, ok, err := q.Result(ctx, rec.JobID)
		if err != nil {
			log.Warn("retrying a publication: its result is not readable", "job", rec.JobID, "cloud", rec.Cloud, "err", err)
			continue
		}
		if !ok {
			// Gone from the results stream: nothing left to publish, and asking
			// again every round would only repeat this.
			rec.State, rec.NextTry, rec.UpdatedAt = jobs.PublicationRefused, nil, time.Now().UTC()
			rec.Reason = "its result is no longer in the results stream (" + rec.Reason + ")"
			if err := q.PutPublication(ctx, rec); err != nil {
				log.Warn("recording a publication whose result is gone", "job", rec.JobID, "cloud", rec.Cloud, "err", err)
			}
			log.Error("publication refused: its result is gone", "job", rec.JobID, "cloud", rec.Cloud)
			continue
		}
		for _, o := range fleet.PublishTo(ctx, q, r, []string{rec.Cloud}, false, true, cfg.RetryDelay) {
			logOutcome(log.With("job", r.JobID, "family", r.Publish.Family, "attempt", rec.Attempts+1), o)
		}
	}
}

// rotateAll applies every published family's policy again in each cloud: the result
// its Latest came from is published once more, which finds its image there and only
// rotates.
func rotateAll(ctx context.Context, q *queue.Queue, fleet *Fleet, log *slog.Logger) {
	recs, err := q.PublishedImages(ctx)
	if err != nil {
		log.Warn("periodic rotation: reading the published families", "err", err)
		return
	}
	for _, rec := range recs {
		cloud := rec.Cloud
		if cloud == "" && len(fleet.targets) == 1 {
			cloud = fleet.targets[0].name // a record from before several clouds
		}
		if fleet.target(cloud) == nil {
			continue // another publisher's cloud
		}
		r, ok, err := q.Result(ctx, rec.JobID)
		if err != nil || !ok {
			log.Warn("periodic rotation: the Latest's result is not readable", "family", rec.Family, "cloud", cloud, "job", rec.JobID, "found", ok, "err", err)
			continue
		}
		p, err := fleet.Publisher(ctx, cloud)
		if err != nil {
			log.Warn("periodic rotation: cloud unavailable, tried again next time", "family", rec.Family, "cloud", cloud, "err", err)
			continue
		}
		out, err := p.Publish(ctx, r, false)
		if err != nil {
			log.Warn("periodic rotation failed, tried again next time", "family", rec.Family, "cloud", cloud, "err", err)
			continue
		}
		log.Info("periodic rotation", "family", rec.Family, "cloud", cloud, "status", out.Status, "actions", len(out.Plan),
			"problems", len(out.Problems), "kept", len(out.Kept))
	}
}
