package queue

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
)

// BucketPublications is the KV bucket holding one record per job and cloud: where
// that job's publication stands in that cloud (published, waiting for a retry,
// refused) and why. Its key is PublicationKey(job, cloud). Only the publisher writes
// it; it is the publisher's memory of what to retry, and what `imagevet status` and
// the web page show of each cloud.
const BucketPublications = "imagevet_publications"

// PublicationKey is the key of one job's record for one cloud in BucketPublications.
func PublicationKey(jobID, cloud string) string { return StatusKey(jobID) + "." + StatusKey(cloud) }

func (q *Queue) publicationsBucket(ctx context.Context, create bool) (jetstream.KeyValue, error) {
	return q.ownBucket(ctx, BucketPublications, "imagevet: each job's publication per cloud", 1, create)
}

// PutPublication writes one job's record for one cloud.
func (q *Queue) PutPublication(ctx context.Context, p jobs.PublicationRecord) error {
	if p.JobID == "" || p.Cloud == "" {
		return errors.New("publication record: empty job id or cloud")
	}
	if p.Version == 0 {
		p.Version = jobs.Version
	}
	kv, err := q.publicationsBucket(ctx, true)
	if err != nil {
		return err
	}
	return put(ctx, kv, PublicationKey(p.JobID, p.Cloud), "publication record", p)
}

// Publication returns one job's record for one cloud and whether there is one.
func (q *Queue) Publication(ctx context.Context, jobID, cloud string) (jobs.PublicationRecord, bool, error) {
	kv, err := q.publicationsBucket(ctx, false)
	if err != nil || kv == nil {
		return jobs.PublicationRecord{}, false, err
	}
	return record(ctx, kv, PublicationKey(jobID, cloud), "publication record", jobs.DecodePublication)
}

// Publications returns every record, sorted by job, then cloud.
func (q *Queue) Publications(ctx context.Context) ([]jobs.PublicationRecord, error) {
	kv, err := q.publicationsBucket(ctx, false)
	if err != nil || kv == nil {
		return nil, err
	}
	return recordsBy(ctx, q, kv, "publication record", jobs.DecodePublication,
		func(p jobs.PublicationRecord) (string, string) { return p.JobID, p.Cloud })
}
