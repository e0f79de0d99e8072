package jobs

import (
	"time"
)

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

// DecodePublished strictly decodes a published record.
func DecodePublished(data []byte) (Published, error) {
	var p Published
	if err := decodeStrict("published record", data, &p); err != nil {
		return Published{}, err
	}
	if err := checkVersion("published record", p.Version); err != nil {
		return Published{}, err
	}
	return p, nil
}
