package queue

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
)

// BucketPublished is the KV bucket holding, per image family and cloud, the image the
// publisher last made the family's Latest in that cloud's Glance. Its key is
// PublishedKey(family, cloud). Only the publisher writes it; status pages and
// `imagevet status` read it.
const BucketPublished = "imagevet_published"

// PublishedKey is the key of a family's record for one cloud in BucketPublished.
func PublishedKey(family, cloud string) string {
	if cloud == "" {
		return StatusKey(family)
	}
	return StatusKey(family) + "." + StatusKey(cloud)
}

// publishedBucket binds to BucketPublished; with create it makes the bucket when it is
// missing. Without create a missing bucket is (nil, nil): nothing was published yet.
func (q *Queue) publishedBucket(ctx context.Context, create bool) (jetstream.KeyValue, error) {
	return q.ownBucket(ctx, BucketPublished, "imagevet: the Latest Glance image per family", 10, create)
}

// PutPublished records p as its family's Latest in p.Cloud.
func (q *Queue) PutPublished(ctx context.Context, p jobs.Published) error {
	if p.Family == "" {
		return errors.New("published record: empty family")
	}
	if p.Version == 0 {
		p.Version = jobs.Version
	}
	kv, err := q.publishedBucket(ctx, true)
	if err != nil {
		return err
	}
	return put(ctx, kv, PublishedKey(p.Family, p.Cloud), "published record", p)
}

// PublishedImage returns the family's Latest record in cloud and whether there is one.
func (q *Queue) PublishedImage(ctx context.Context, family, cloud string) (jobs.Published, bool, error) {
	kv, err := q.publishedBucket(ctx, false)
	if err != nil || kv == nil {
		return jobs.Published{}, false, err
	}
	return record(ctx, kv, PublishedKey(family, cloud), "published record", jobs.DecodePublished)
}

// PublishedImages returns every family's Latest record in every cloud, sorted by
// family, then cloud.
func (q *Queue) PublishedImages(ctx context.Context) ([]jobs.Published, error) {
	kv, err := q.publishedBucket(ctx, false)
	if err != nil || kv == nil {
		return nil, err
	}
	return recordsBy(ctx, q, kv, "published record", jobs.DecodePublished,
		func(p jobs.Published) (string, string) { return p.Family, p.Cloud })
}
