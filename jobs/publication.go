package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketPublications is the KV bucket holding one record per job and cloud: where
// that job's publication stands in that cloud (published, waiting for a retry,
// refused) and why. Its key is PublicationKey(job, cloud). Only the publisher writes
// it; it is the publisher's memory of what to retry, and what `imagevet status` and
// the web page show of each cloud.
const BucketPublications = "imagevet_publications"

// Publication states.
const (
	PublicationDone     = "published" // the job's image is in the cloud (or superseded there: nothing to do)
	PublicationRetrying = "retrying"  // the cloud failed for a passing reason; tried again after NextTry
	PublicationRefused  = "refused"   // permanently refused (wrong bytes, bad result, bad configuration); an operator retries it
)

// PublicationRecord is one job's publication in one cloud.
type PublicationRecord struct {
	Version int    `json:"version"`
	JobID   string `json:"job_id"`
	Family  string `json:"family"`
	Cloud   string `json:"cloud"`
	Region  string `json:"region,omitempty"`
	// State is PublicationDone, PublicationRetrying or PublicationRefused.
	State string `json:"state"`
	// Outcome is the publisher's own status (published, already, superseded…) once done.
	Outcome string `json:"outcome,omitempty"`
	// Reason says why a publication is retried or refused (the error, naming the cloud).
	Reason  string `json:"reason,omitempty"`
	ImageID string `json:"image_id,omitempty"`
	// SourceHash is the vendor file's sha512; OSHashValue the published file's, as the
	// worker recorded it (and Glance computed it, once published).
	SourceHash  string    `json:"source_hash,omitempty"`
	OSHashValue string    `json:"os_hash_value,omitempty"`
	Attempts    int       `json:"attempts"`
	UpdatedAt   time.Time `json:"updated_at"`
	// NextTry is when a retrying publication is due again.
	NextTry *time.Time `json:"next_try,omitempty"`
}

// ValidCloudName reports whether name may name a publisher's cloud (what
// publish.clouds lists): 1-64 lowercase letters, digits, '.', '_' or '-'.
func ValidCloudName(name string) bool { return familyKey.MatchString(name) }

// PublicationKey is the key of one job's record for one cloud in BucketPublications.
func PublicationKey(jobID, cloud string) string { return StatusKey(jobID) + "." + StatusKey(cloud) }

func (q *Queue) publicationsBucket(ctx context.Context, create bool) (jetstream.KeyValue, error) {
	return q.ownBucket(ctx, BucketPublications, "imagevet: each job's publication per cloud", 1, create)
}

// PutPublication writes one job's record for one cloud.
func (q *Queue) PutPublication(ctx context.Context, p PublicationRecord) error {
	if p.JobID == "" || p.Cloud == "" {
		return errors.New("publication record: empty job id or cloud")
	}
	if p.Version == 0 {
		p.Version = Version
	}
	kv, err := q.publicationsBucket(ctx, true)
	if err != nil {
		return err
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode publication record: %w", err)
	}
	if _, err := kv.Put(ctx, PublicationKey(p.JobID, p.Cloud), data); err != nil {
		return fmt.Errorf("write publication record %s in %s: %w", p.JobID, p.Cloud, err)
	}
	return nil
}

// Publication returns one job's record for one cloud and whether there is one.
func (q *Queue) Publication(ctx context.Context, jobID, cloud string) (PublicationRecord, bool, error) {
	kv, err := q.publicationsBucket(ctx, false)
	if err != nil || kv == nil {
		return PublicationRecord{}, false, err
	}
	entry, err := kv.Get(ctx, PublicationKey(jobID, cloud))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return PublicationRecord{}, false, nil
	}
	if err != nil {
		return PublicationRecord{}, false, fmt.Errorf("read publication record %s in %s: %w", jobID, cloud, err)
	}
	p, err := decodePublication(entry.Value())
	if err != nil {
		return PublicationRecord{}, false, fmt.Errorf("publication record %s in %s: %w", jobID, cloud, err)
	}
	return p, true, nil
}

// Publications returns every record, sorted by job, then cloud.
func (q *Queue) Publications(ctx context.Context) ([]PublicationRecord, error) {
	kv, err := q.publicationsBucket(ctx, false)
	if err != nil || kv == nil {
		return nil, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", BucketPublications, err)
	}
	defer lister.Stop()
	var out []PublicationRecord
	for key := range lister.Keys() {
		entry, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read publication record %s: %w", key, err)
		}
		p, err := decodePublication(entry.Value())
		if err != nil {
			return nil, fmt.Errorf("publication record %s: %w", key, err)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].JobID != out[j].JobID {
			return out[i].JobID < out[j].JobID
		}
		return out[i].Cloud < out[j].Cloud
	})
	return out, nil
}

func decodePublication(data []byte) (PublicationRecord, error) {
	var p PublicationRecord
	if err := decodeStrict("publication record", data, &p); err != nil {
		return PublicationRecord{}, err
	}
	if err := checkVersion("publication record", p.Version); err != nil {
		return PublicationRecord{}, err
	}
	return p, nil
}
