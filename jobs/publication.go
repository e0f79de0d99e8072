package jobs

import (
	"time"
)

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

// DecodePublication strictly decodes a publication record.
func DecodePublication(data []byte) (PublicationRecord, error) {
	var p PublicationRecord
	if err := decodeStrict("publication record", data, &p); err != nil {
		return PublicationRecord{}, err
	}
	if err := checkVersion("publication record", p.Version); err != nil {
		return PublicationRecord{}, err
	}
	return p, nil
}
