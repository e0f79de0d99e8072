package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
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
	// RetryDelay is how long a publication that failed for a passing reason (the
	// cloud, the network) waits before it is tried again.
	RetryDelay time.Duration
	// RotateEvery is how often the service brings every published family to its
	// policy again without a new release: an old image whose last user went away
	// is deleted then, and a step that failed (a delete refused) is retried,
	// instead of waiting for the family's next release.
	RotateEvery time.Duration
	Logger      *slog.Logger
}

// Serve publishes results as they arrive until ctx ends: at least once per result,
// idempotent by job id (Publish finds a job's image already in Glance). Results that
// do not ask for publication are acknowledged at once; a publication that failed for
// a passing reason is retried after RetryDelay; one that cannot succeed (wrong bytes,
// a bad result) is logged and dropped.
func Serve(ctx context.Context, q *jobs.Queue, p *Publisher, cfg ServiceConfig) error {
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
	cons, err := q.JetStream().CreateOrUpdateConsumer(ctx, jobs.StreamResults, jetstream.ConsumerConfig{
		Durable:       ConsumerPublishers,
		Description:   "imagevet publishers",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: 1,
		FilterSubject: jobs.SubjectResults,
		Replicas:      q.Replicas(),
	})
	if err != nil {
		return fmt.Errorf("set up consumer %s: %w", ConsumerPublishers, err)
	}
	log.Info("publisher serving", "consumer", ConsumerPublishers, "cloud", p.cfg.Cloud.Name)
	nextRotation := time.Now().Add(cfg.RotateEvery)
	for ctx.Err() == nil {
		if time.Now().After(nextRotation) {
			rotateAll(ctx, q, p, log)
			nextRotation = time.Now().Add(cfg.RotateEvery)
		}
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoHeartbeat) {
			continue
		}
		if err != nil {
			log.Warn("fetching a result", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		handle(ctx, p, msg, cfg, log)
	}
	return nil
}

// handle publishes one delivered result and settles the message: ack once done (the
// record is written before), nak with a delay for a passing failure, term otherwise.
func handle(ctx context.Context, p *Publisher, msg jetstream.Msg, cfg ServiceConfig, log *slog.Logger) {
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
	out, err := p.Publish(hctx, r, false)
	stop()
	switch {
	case err == nil:
		log.Info("publication done", "status", out.Status, "image", out.ImageID, "latest", out.Latest,
			"problems", len(out.Problems), "kept", len(out.Kept), "reason", out.Reason)
		for _, pr := range out.Problems {
			log.Warn("publication problem, retried on the next run", "problem", pr)
		}
		_ = msg.Ack()
	case ctx.Err() != nil:
		// Shutting down: another publisher (or the next start) takes it again.
		_ = msg.Nak()
	case Retryable(err):
		log.Warn("publication failed, will retry", "err", err, "delay", cfg.RetryDelay)
		_ = msg.NakWithDelay(cfg.RetryDelay)
	default:
		log.Error("publication refused", "err", err)
		_ = msg.Term()
	}
}

// rotateAll applies every published family's policy again: the result its Latest
// came from is published once more, which finds its image there and only rotates.
func rotateAll(ctx context.Context, q *jobs.Queue, p *Publisher, log *slog.Logger) {
	recs, err := q.PublishedImages(ctx)
	if err != nil {
		log.Warn("periodic rotation: reading the published families", "err", err)
		return
	}
	for _, rec := range recs {
		r, ok, err := q.Result(ctx, rec.JobID)
		if err != nil || !ok {
			log.Warn("periodic rotation: the Latest's result is not readable", "family", rec.Family, "job", rec.JobID, "found", ok, "err", err)
			continue
		}
		out, err := p.Publish(ctx, r, false)
		if err != nil {
			log.Warn("periodic rotation failed, tried again next time", "family", rec.Family, "err", err)
			continue
		}
		log.Info("periodic rotation", "family", rec.Family, "status", out.Status, "actions", len(out.Plan),
			"problems", len(out.Problems), "kept", len(out.Kept))
	}
}
