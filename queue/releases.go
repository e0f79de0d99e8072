package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
)

// BucketReleases is the KV bucket where `imagevet watch` records, per image family
// (key: the family's catalog key, e.g. "debian-12"), the newest upstream release it
// has seen and the job that vets it. Several watchers share it: a release is queued
// once, whoever sees it first.
const BucketReleases = "imagevet_releases"

// ReleasesBucket creates BucketReleases when it is missing and returns it. Watchers,
// status and the web page all open it this way, so whichever starts first creates it.
func (q *Queue) ReleasesBucket(ctx context.Context) (jetstream.KeyValue, error) {
	return q.ownBucket(ctx, BucketReleases, "imagevet: newest upstream release per image family", 10, true)
}

// ownBucket opens a KV bucket that its users make themselves rather than queue
// setup; with create it makes it when it is missing (with the queue's replicas and
// history entries per key), without it a missing bucket is (nil, nil).
func (q *Queue) ownBucket(ctx context.Context, name, description string, history uint8, create bool) (jetstream.KeyValue, error) {
	kv, err := q.js.KeyValue(ctx, name)
	switch {
	case err == nil:
		return kv, nil
	case !errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, fmt.Errorf("open bucket %s: %w", name, err)
	case !create:
		return nil, nil
	}
	kv, err = q.js.CreateOrUpdateKeyValue(ctx, bucketConfig(q.Replicas(), name, description, history, 0))
	if err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", name, err)
	}
	return kv, nil
}

// Releases returns the record of every family in BucketReleases, in key order; none
// when no watcher has created the bucket yet.
func (q *Queue) Releases(ctx context.Context) ([]jobs.ReleaseRecord, error) {
	kv, err := q.js.KeyValue(ctx, BucketReleases)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketReleases, err)
	}
	return records(ctx, q, kv, "release", jobs.DecodeReleaseRecord)
}

// ReleaseHistory returns the records BucketReleases still holds for family, oldest
// first (the bucket keeps the last 10 writes per family: each release's first
// record says when a watcher first saw it); none when the family or the bucket is
// unknown.
func (q *Queue) ReleaseHistory(ctx context.Context, family string) ([]jobs.ReleaseRecord, error) {
	kv, err := q.js.KeyValue(ctx, BucketReleases)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketReleases, err)
	}
	entries, err := kv.History(ctx, family)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the history of release %s: %w", family, err)
	}
	var out []jobs.ReleaseRecord
	for _, e := range entries {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		rec, err := jobs.DecodeReleaseRecord(e.Value())
		if err != nil {
			return nil, fmt.Errorf("release %s (revision %d): %w", family, e.Revision(), err)
		}
		out = append(out, rec)
	}
	return out, nil
}
