package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Release states.
const (
	// ReleasePending: the release is recorded and its job is being submitted; a
	// watcher that finds a release in this state submits the job again (the job id is
	// deterministic, so the queue drops the duplicate).
	ReleasePending = "pending"
	// ReleaseQueued: the job is in the queue; its verdict is the job's result.
	ReleaseQueued = "queued"
)

// ReleaseRecord is what BucketReleases holds for one family: the newest release seen
// upstream, the job vetting it, and the state of the family's feed. The vetting
// verdict itself is the job's result (Queue.Result with JobID).
type ReleaseRecord struct {
	Version int `json:"version"` // document version
	// Family is the catalog key ("debian-12") and Name its stable image name
	// ("Debian 12 Bookworm"), the job's publish.name.
	Family string `json:"family"`
	Name   string `json:"name,omitempty"`
	// Release is the vendor's version or build id ("20261120-1234", "24.04 20261120").
	Release string `json:"release"`
	// URL is where the artefact is downloaded from; Digest is the vendor's digest of
	// it ("sha256:<hex>" or "sha512:<hex>"); Size its length when the feed says.
	URL    string `json:"url"`
	Digest string `json:"digest"`
	Size   int64  `json:"size,omitempty"`
	// ReleasedAt is when the vendor released it, when the feed says.
	ReleasedAt *time.Time `json:"released_at,omitempty"`
	// FirstSeen is when a watcher first saw this release.
	FirstSeen time.Time `json:"first_seen"`
	// JobID is the deterministic id of the job vetting it (see ReleaseJobID).
	JobID string `json:"job_id,omitempty"`
	// State is pending or queued.
	State string `json:"state"`
	// CheckedAt is the end of the family's last successful feed check.
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// FeedError is the last failed check's error, cleared by a successful one, and
	// FeedErrorAt when it happened.
	FeedError   string     `json:"feed_error,omitempty"`
	FeedErrorAt *time.Time `json:"feed_error_at,omitempty"`
	// Validators are the HTTP cache validators of the feed's documents at the last
	// successful check, so the next check is a conditional request.
	Validators map[string]Validator `json:"validators,omitempty"`
	// Digests lists, oldest first, every set of bytes the feed has published under
	// Release when there was more than one (a vendor's respin, a mirror pool serving
	// two builds, or tampering on a feed without signatures); empty while there was
	// one. The record follows the newest bytes once and never goes back to bytes
	// listed here.
	Digests []ReleaseDigest `json:"digests,omitempty"`
}

// ReleaseDigest is one set of bytes a feed published under a release.
type ReleaseDigest struct {
	Digest    string    `json:"digest"` // "sha256:<hex>" or "sha512:<hex>"
	URL       string    `json:"url"`
	FirstSeen time.Time `json:"first_seen"`
	JobID     string    `json:"job_id"` // the job vetting these bytes
}

// Validator is an HTTP response's cache validators: sent back as If-None-Match and
// If-Modified-Since, they let an unchanged feed answer 304 Not Modified.
type Validator struct {
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// DecodeReleaseRecord reads a record from BucketReleases.
func DecodeReleaseRecord(data []byte) (ReleaseRecord, error) {
	var r ReleaseRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return ReleaseRecord{}, fmt.Errorf("release record: %w", err)
	}
	if r.Version > Version {
		return ReleaseRecord{}, fmt.Errorf("release record: version %d is newer than this build reads (%d)", r.Version, Version)
	}
	return r, nil
}

// ReleaseJobID is the id of the job vetting one release: the family, the release and
// a short prefix of the digest, so reruns and concurrent watchers derive the same id
// and the queue runs it once, and a re-spun release under the same version still
// gets its own job. Characters a job id may not hold become '-'; an id that would be
// too long is shortened with a digest of what was cut.
func ReleaseJobID(family, release, digest string) string {
	hexPart := digest
	if i := strings.IndexByte(hexPart, ':'); i >= 0 {
		hexPart = hexPart[i+1:]
	}
	if len(hexPart) > 12 {
		hexPart = hexPart[:12]
	}
	id := sanitizeID(family) + "-" + sanitizeID(release) + "-" + sanitizeID(hexPart)
	id = strings.TrimLeft(id, "-_")
	if len(id) > 128 {
		sum := sha256.Sum256([]byte(id))
		id = strings.TrimRight(id[:128-17], "-_") + "-" + hex.EncodeToString(sum[:8])
	}
	return id
}

func sanitizeID(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			b[i] = '-'
		}
	}
	return string(b)
}
