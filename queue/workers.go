package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WorkerInfo is one worker's heartbeat in BucketWorkers (key: worker id), what the
// web Workers page and `imagevet jobs --workers` show.
type WorkerInfo struct {
	ID      string `json:"id"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
	Accel   string `json:"accel,omitempty"`
	// AccelReason says why Accel: the KVM probe's verdict, or that tcg was asked for.
	AccelReason string   `json:"accel_reason,omitempty"`
	Slots       int      `json:"slots"`
	Running     []string `json:"running"`
	// Draining is set once the worker stopped pulling (shutdown).
	Draining  bool      `json:"draining,omitempty"`
	StartedAt time.Time `json:"started_at"`
	Heartbeat time.Time `json:"heartbeat"`
}

// Worker heartbeat timing: a worker puts its entry every WorkerHeartbeat; the bucket
// drops entries older than WorkerTTL.
const (
	WorkerHeartbeat = 10 * time.Second
	WorkerTTL       = 35 * time.Second
)

// PutWorker writes (refreshes) a worker's heartbeat entry.
func (q *Queue) PutWorker(ctx context.Context, w WorkerInfo) error {
	if w.ID == "" {
		return errors.New("worker heartbeat: empty worker id")
	}
	if w.Heartbeat.IsZero() {
		w.Heartbeat = time.Now().UTC()
	}
	if w.Running == nil {
		w.Running = []string{}
	}
	return put(ctx, q.workers, workerKey(w.ID), "worker heartbeat", w)
}

// RemoveWorker deletes a worker's entry when it stops cleanly.
func (q *Queue) RemoveWorker(ctx context.Context, id string) error {
	if err := q.workers.Purge(ctx, workerKey(id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("remove worker %s: %w", id, err)
	}
	return nil
}

// Workers returns the live workers (those with a heartbeat younger than WorkerTTL),
// by id.
func (q *Queue) Workers(ctx context.Context) ([]WorkerInfo, error) {
	lister, err := q.workers.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	defer lister.Stop()
	out := []WorkerInfo{}
	for key := range lister.Keys() {
		entry, err := q.workers.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read worker %s: %w", key, err)
		}
		var w WorkerInfo
		if json.Unmarshal(entry.Value(), &w) != nil || time.Since(w.Heartbeat) > WorkerTTL {
			continue
		}
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// workerKey maps a worker id to a valid KV key.
func workerKey(id string) string { return StatusKey(id) }
