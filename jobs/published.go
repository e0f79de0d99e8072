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

// BucketPublished is the KV bucket holding, per image family and cloud, the image the
// publisher last made the family's Latest in that cloud's Glance. Its key is
// PublishedKey(family, cloud). Only the publisher writes it; status pages and
// `imagevet status` read it.
const BucketPublished = "imagevet_published"

// Published records the image that is a family's Latest in Glance: which job vetted it
// and the sha512 Glance computed from the uploaded bytes (equal to the vetted one,
// or the publisher would not have kept the image).
type Published struct {
	Version int    `json:"version"`
	Family  string `json:"family"`
	// Name is the Glance image name ("Debian 12 Bookworm - Latest" style).
	Name string `json:"name"`
	// ImageID is the Glance image id.
	ImageID string `json:"image_id"`
	// Release is the vendor's version or build id (publish.release).
	Release string `json:"release,omitempty"`
	// ReleasedAt is when the vendor released it, when the job said.
	ReleasedAt *time.Time `json:"released_at,omitempty"`
	// JobID is the job whose pass verdict allowed the publication.
	JobID string `json:"job_id"`
	// VerdictAt is when that verdict was reached (Result.FinishedAt).
	VerdictAt time.Time `json:"verdict_at"`
	// PublishedAt is when the image became active and took the Latest name.
	PublishedAt time.Time `json:"published_at"`
	// OSHashAlgo and OSHashValue are Glance's (sha512) for the uploaded bytes.
	OSHashAlgo  string `json:"os_hash_algo"`
	OSHashValue string `json:"os_hash_value"`
	// SourceHash is the sha512 of the vendor's original file (the image's
	// source_hash property); it differs from OSHashValue when the published file is
	// a conversion of the vendor's.
	SourceHash string `json:"source_hash,omitempty"`
	// Cloud names the cloud published to, as the publisher names it (what a job's
	// publish.clouds selects); empty in records written before several clouds.
	Cloud string `json:"cloud,omitempty"`
	// Region is the cloud's region, when it has one.
	Region string `json:"region,omitempty"`
	// Replaced is the image id that was Latest before, if any.
	Replaced string `json:"replaced,omitempty"`
}

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
func (q *Queue) PutPublished(ctx context.Context, p Published) error {
	if p.Family == "" {
		return errors.New("published record: empty family")
	}
	if p.Version == 0 {
		p.Version = Version
	}
	kv, err := q.publishedBucket(ctx, true)
	if err != nil {
		return err
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode published record: %w", err)
	}
	if _, err := kv.Put(ctx, PublishedKey(p.Family, p.Cloud), data); err != nil {
		return fmt.Errorf("write published record %s: %w", p.Family, err)
	}
	return nil
}

// PublishedImage returns the family's Latest record in cloud and whether there is one.
func (q *Queue) PublishedImage(ctx context.Context, family, cloud string) (Published, bool, error) {
	kv, err := q.publishedBucket(ctx, false)
	if err != nil || kv == nil {
		return Published{}, false, err
	}
	entry, err := kv.Get(ctx, PublishedKey(family, cloud))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Published{}, false, nil
	}
	if err != nil {
		return Published{}, false, fmt.Errorf("read published record %s: %w", family, err)
	}
	p, err := decodePublished(entry.Value())
	if err != nil {
		return Published{}, false, fmt.Errorf("published record %s: %w", family, err)
	}
	return p, true, nil
}

// PublishedImages returns every family's Latest record in every cloud, sorted by
// family, then cloud.
func (q *Queue) PublishedImages(ctx context.Context) ([]Published, error) {
	kv, err := q.publishedBucket(ctx, false)
	if err != nil || kv == nil {
		return nil, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", BucketPublished, err)
	}
	defer lister.Stop()
	var out []Published
	for key := range lister.Keys() {
		entry, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read published record %s: %w", key, err)
		}
		p, err := decodePublished(entry.Value())
		if err != nil {
			return nil, fmt.Errorf("published record %s: %w", key, err)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Family != out[j].Family {
			return out[i].Family < out[j].Family
		}
		return out[i].Cloud < out[j].Cloud
	})
	return out, nil
}

func decodePublished(data []byte) (Published, error) {
	var p Published
	if err := decodeStrict("published record", data, &p); err != nil {
		return Published{}, err
	}
	if err := checkVersion("published record", p.Version); err != nil {
		return Published{}, err
	}
	return p, nil
}
